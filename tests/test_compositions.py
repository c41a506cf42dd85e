import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymatgen.core import Composition

from fm_engine.compositions import (
    atomic_fractions,
    canonical_key,
    format_formula,
    format_percent,
    parse_many,
    to_weights,
    weights_to_fractions,
)
from fm_engine.elements import element_index, element_symbols


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fe2O3", {"Fe": 0.4, "O": 0.6}),
        ("Al0.65Cu0.2Fe0.15", {"Al": 0.65, "Cu": 0.2, "Fe": 0.15}),
        ("Ca3(PO4)2", {"Ca": 3 / 13, "P": 2 / 13, "O": 8 / 13}),
        ("Al0.25 Co1 Fe1 Ni1", {"Al": 0.25 / 3.25, "Co": 1 / 3.25, "Fe": 1 / 3.25, "Ni": 1 / 3.25}),
        ("Al 0.5 Cu 0.5", {"Al": 0.5, "Cu": 0.5}),
        ("  NaCl ", {"Na": 0.5, "Cl": 0.5}),
        ("FeFe", {"Fe": 1.0}),
    ],
)
def test_atomic_fractions_of_formula_strings(text, expected):
    fractions = atomic_fractions(text)
    assert fractions.keys() == expected.keys()
    for symbol, value in expected.items():
        assert fractions[symbol] == pytest.approx(value)


def test_dict_and_composition_inputs_agree_with_strings():
    assert canonical_key({"Fe": 2, "O": 3}) == canonical_key("Fe2O3")
    assert canonical_key(Composition("Fe2O3")) == canonical_key("Fe2O3")


def test_canonical_key_is_reduced_sorted_and_rounded():
    assert canonical_key("Fe2O3") == "Fe0.4O0.6"
    assert canonical_key("Fe4O6") == canonical_key("O3Fe2") == "Fe0.4O0.6"
    assert canonical_key("Fe1O1.0000000001") == canonical_key("FeO")
    assert canonical_key("Al0.25 Co1 Fe1 Ni1") == "Al0.076923Co0.307692Fe0.307692Ni0.307692"


def test_readable_formula_and_percent():
    assert format_formula("Al0.65Cu0.2Fe0.15") == "Al0.650Cu0.200Fe0.150"
    assert format_formula("Fe2O3") == "O0.600Fe0.400"
    assert format_percent("Al13Cu4Fe3") == "Al65Cu20Fe15"
    assert format_percent("FeNiCo") == "Co33.3Fe33.3Ni33.3"


def test_weight_vector_round_trip():
    w = to_weights("Al0.65Cu0.2Fe0.15")
    assert w.shape == (94,)
    assert w.sum() == pytest.approx(1.0)
    assert w[element_index()["Cu"]] == pytest.approx(0.2)
    assert format_formula(weights_to_fractions(w)) == "Al0.650Cu0.200Fe0.150"
    assert list(weights_to_fractions(w)) == ["Al", "Cu", "Fe"]  # largest first


def test_weights_to_fractions_threshold_and_bad_vectors():
    w = np.zeros(94)
    w[[0, 7, 25]] = [0.001, 0.5, 0.499]
    assert set(weights_to_fractions(w, threshold=0.01)) == {"O", "Fe"}
    with pytest.raises(ValueError, match="length 3"):
        weights_to_fractions([0.5, 0.5, 0])
    with pytest.raises(ValueError, match="non-negative"):
        weights_to_fractions(-w)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty formula"),
        ("   ", "empty formula"),
        ("Xx2O3", "unknown element 'Xx'"),
        ("Am2O3", "element Am is outside the element table"),
        ("Fe-1O2", "negative amount"),
        ("Fe0O", "zero amount of Fe"),
        ("Fe0.0Ni1", "zero amount of Fe"),
        ({"Fe": 1, "O": 0}, "zero amount of O"),
        ({"Fe": -1}, "negative amount of Fe"),
        ({"Fe": "a lot"}, "not a number"),
        ({}, "no elements"),
        ("hello!!", "not a chemical formula"),
        ("fe2o3", "not a chemical formula"),
        (42, "expected a formula string"),
    ],
)
def test_bad_input_names_text_and_reason(value, reason):
    with pytest.raises(ValueError, match=reason) as error:
        canonical_key(value)
    if isinstance(value, str) and value.strip():
        assert value in str(error.value)


def test_batch_reports_bad_rows_and_keeps_good_ones():
    batch = parse_many(["Fe2O3", "garbage", None, "Xx", "NaCl", "Fe2O3"], row_labels=[10, 11, 12, 13, 14, 15])
    assert list(batch.rows) == [0, 4, 5]
    assert batch.keys == ["Fe0.4O0.6", "Cl0.5Na0.5", "Fe0.4O0.6"]
    assert batch.weights.shape == (3, 94)
    assert list(batch.bad["row"]) == [11, 12, 13]
    assert "missing composition" in batch.bad["reason"].iloc[1]
    assert "unknown element" in batch.bad["reason"].iloc[2]


@given(
    st.dictionaries(
        st.sampled_from(element_symbols()),
        st.floats(min_value=0.01, max_value=100, allow_nan=False),
        min_size=1,
        max_size=6,
    )
)
def test_dict_string_round_trip_property(amounts):
    text = " ".join(f"{symbol}{amount:.6f}" for symbol, amount in amounts.items())
    from_text = atomic_fractions(text)
    from_dict = atomic_fractions(amounts)
    assert from_text.keys() == from_dict.keys()
    assert sum(from_text.values()) == pytest.approx(1.0)
    for symbol in from_dict:
        assert from_text[symbol] == pytest.approx(from_dict[symbol], rel=1e-3)
    # The canonical key parses back to the same composition.
    assert canonical_key(canonical_key(amounts)) == canonical_key(amounts)


def test_weights_from_keys_equal_parse_many():
    from fm_engine.compositions import weights_from_keys

    keys = ["Fe0.4O0.6", "Al0.333333Cu0.333333Ni0.333334", "Fe2O3", "H", "Xx2", "", "Ca3(PO4)2"]
    weights, readable = weights_from_keys(keys)
    parsed = parse_many(keys)
    assert readable.tolist() == [True, True, True, True, False, False, True]
    np.testing.assert_array_equal(weights[readable], parsed.weights)
    assert not weights[~readable].any()
