"""Distance to the training data: exact nearest neighbours, per-task domains recorded in real checkpoints,
and the extrapolation warnings of `fm predict`."""

import shutil

import numpy as np
import pandas as pd
import pytest

from fm_engine.applicability import beyond_tested, is_beyond_tested, nearest, training_domain
from fm_engine.checkpoints import load_checkpoint
from fm_engine.cli import main
from fm_engine.compositions import parse_many, to_weights
from fm_engine.predict import predict_frame


def test_nearest_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    reference = rng.random((300, 94)) * (rng.random((300, 94)) < 0.05)
    reference = reference[reference.sum(axis=1) > 0]
    reference /= reference.sum(axis=1, keepdims=True)
    queries = np.vstack([reference[:5], rng.dirichlet(np.ones(94), size=20)])
    index, distance = nearest(queries, reference, chunk_size=7)
    brute = 0.5 * np.abs(queries[:, None, :] - reference[None, :, :]).sum(axis=2)
    np.testing.assert_allclose(distance, brute.min(axis=1), atol=1e-5)
    np.testing.assert_allclose(brute[np.arange(len(queries)), index], brute.min(axis=1), atol=1e-5)
    assert np.all(distance[:5] < 1e-6)


def test_distance_is_the_fraction_of_atoms_that_differ():
    reference = np.stack([to_weights("Fe"), to_weights("CoCrFeNi")])
    _, distance = nearest(np.stack([to_weights("Fe"), to_weights("Fe3Ni"), to_weights("NaCl")]), reference)
    np.testing.assert_allclose(distance, [0.0, 0.25, 1.0], atol=1e-6)
    assert np.isnan(nearest(reference, np.zeros((0, 94)))[1]).all()


def test_checkpoints_record_which_task_each_composition_trains(tiny_run, tiny_data):
    checkpoint = load_checkpoint(tiny_run)
    table = checkpoint.compositions()
    assert {"composition", "split", "tasks"} <= set(table.columns)
    bulk_keys = set(parse_many(pd.read_csv(tiny_data / "bulk.csv")["formula"].tolist()).keys)
    bulk = training_domain(checkpoint, "bulk_modulus")
    assert bulk.task == "bulk_modulus" and len(bulk.keys) > 100
    assert set(bulk.keys) <= bulk_keys  # only compositions labelled for the task ...
    assert set(bulk.keys) == set(table.loc[table["split"] == "train", "composition"]) & bulk_keys  # ... all of them
    test_keys = table.loc[(table["split"] == "test") & table["tasks"].str.contains("bulk_modulus"), "composition"]
    expected = nearest(parse_many(test_keys.tolist()).weights, bulk.weights)[1].max()
    assert bulk.tested_up_to == pytest.approx(expected)
    curves = training_domain(checkpoint, "yield_strength")
    assert 0 < len(curves.keys) < len(bulk.keys) and not set(curves.keys) & bulk_keys


def test_fm_predict_flags_extrapolation_per_task(tiny_run, tmp_path, capsys):
    checkpoint = load_checkpoint(tiny_run)
    trained_alloy = training_domain(checkpoint, "yield_strength").keys[0]
    pd.DataFrame({"Formula": ["NaCl", trained_alloy]}).to_csv(tmp_path / "in.csv", index=False)
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(tiny_run),
                "--input",
                str(tmp_path / "in.csv"),
                "--output",
                str(tmp_path / "out.csv"),
            ]
        )
        == 0
    )  # fmt: skip  (the Formula column is found)
    printed = capsys.readouterr().out
    out = pd.read_csv(tmp_path / "out.csv")
    assert out.loc[0, "yield_strength_distance_to_training"] == pytest.approx(1.0)
    assert out.loc[1, "yield_strength_distance_to_training"] == pytest.approx(0.0, abs=1e-6)
    tested = training_domain(checkpoint, "yield_strength").tested_up_to
    assert "warning: yield_strength: 1 row is as far from the task's training compositions as its furthest" in printed
    assert f"(distance >= {tested:.2f})" in printed
    flagged = out["extrapolated_for"].fillna("").str.split(", ")
    assert "yield_strength" in flagged[0] and "yield_strength" not in flagged[1]
    assert beyond_tested(checkpoint, out)["yield_strength"] == (1, tested)
    assert not is_beyond_tested(out.loc[1, "yield_strength_distance_to_training"], tested)


def test_predict_needs_a_composition_column(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    with pytest.raises(ValueError, match=r"no composition column found \(columns: sample; found automatically when"):
        predict_frame(checkpoint, pd.DataFrame({"sample": ["Fe"]}))
    frame = predict_frame(checkpoint, pd.DataFrame({" ALLOY ": ["CoCrFeNi"]}), distances=False)
    assert not [c for c in frame.columns if "distance" in c] and np.isfinite(frame.loc[0, "bulk_modulus [GPa]"])


def test_old_checkpoints_without_the_task_record_get_one_distance(tiny_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_run / "checkpoint", old)
    table = pd.read_csv(old / "compositions.csv")
    table[["composition", "split"]].to_csv(old / "compositions.csv", index=False)
    checkpoint = load_checkpoint(old)
    assert training_domain(checkpoint, "bulk_modulus").task is None
    frame = predict_frame(checkpoint, pd.DataFrame({"composition": ["NaCl"]}))
    assert [c for c in frame.columns if "distance" in c] == ["distance_to_training"]
    assert "extrapolated_for" not in frame.columns and beyond_tested(checkpoint, frame) == {}


def test_the_model_card_states_how_far_the_test_set_reaches(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    for entry in checkpoint.card.tasks:
        reach = entry.test_distance_to_training
        domain = training_domain(checkpoint, entry.name)
        assert reach["max"] == pytest.approx(domain.tested_up_to, abs=1e-4)
        assert 0 <= reach["median"] <= reach["max"] <= 1
    card_md = (checkpoint.path / "card.md").read_text(encoding="utf-8")
    assert "test distance to training (median / max)" in card_md
    bulk = checkpoint.card.task("bulk_modulus").test_distance_to_training
    assert f"{bulk['median']:.2f} / {bulk['max']:.2f}" in card_md


def test_nearest_by_group_equals_a_search_per_group(monkeypatch):
    from fm_engine import applicability
    from fm_engine.applicability import GroupedIndex, ReferenceIndex, nearest_by_group

    rng = np.random.default_rng(4)
    keys = [f"{a}{x}{b}{1 - x:.2f}" for a, b in [("Fe", "Ni"), ("Al", "Cu"), ("Ti", "O")] for x in (0.1, 0.3, 0.5)]
    keys += ["Fe0.2Ni0.3Cr0.5", "Al0.1Cu0.2Fe0.3Ni0.4", "NaCl", "Fe"]
    reference = parse_many(keys).weights
    groups = rng.random((len(reference), 4)) < [0.9, 0.5, 0.2, 0.0]  # the last group has no reference
    queries = parse_many(["Fe0.15Ni0.85", "Al0.5Cu0.3Fe0.2", "FeNiCrCoMnAlTiVCuZn", "KBr", "Fe2O3"]).weights
    for many_patterns in (False, True):  # both ways of taking each group's best candidate
        monkeypatch.setattr(applicability, "PATTERNS_PER_GROUP", 0 if many_patterns else 16)
        found = nearest_by_group(queries, GroupedIndex(ReferenceIndex(reference), groups))
        for g in range(groups.shape[1]):
            expected = nearest(queries, reference[groups[:, g]])[1]
            np.testing.assert_array_equal(found[:, g], expected)
        assert np.isnan(found[:, 3]).all() and not np.isnan(found[:, 0]).any()


def _random_compositions(rng, n, *, pool, most, grid):
    """``n`` compositions of 1..``most`` elements drawn from the first ``pool`` elements, amounts on a grid of
    ``grid`` steps (so systems, ratios and distances repeat: ties and pruning are exercised)."""
    weights = np.zeros((n, 94))
    for row in range(n):
        elements = rng.choice(pool, size=rng.integers(1, most + 1), replace=False)
        weights[row, elements] = rng.integers(1, grid + 1, size=len(elements))
    return weights / weights.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(6))
def test_the_pruned_grouped_search_equals_a_brute_force_search(seed, monkeypatch):
    """The subset-pruned search of `nearest_by_group` against every reference of every group, on small
    random sets dense in shared chemical systems (references up to 10 elements, queries up to 10: the wide
    references and the dense path too), with both ways of reducing candidates per group."""
    from fm_engine import applicability
    from fm_engine.applicability import GroupedIndex, ReferenceIndex, nearest_by_group

    rng = np.random.default_rng(seed)
    pool = [4, 8, 13, 25, 26, 27, 28, 29] + list(rng.choice(np.arange(30, 94), size=4 + seed, replace=False))
    reference = _random_compositions(rng, 400, pool=pool, most=[4, 6, 10][seed % 3], grid=[3, 6, 20][seed % 3])
    queries = np.vstack([_random_compositions(rng, 150, pool=pool, most=[4, 8, 10][seed % 3], grid=6),
                         reference[rng.choice(len(reference), 10)]])  # fmt: skip
    groups = rng.random((len(reference), 5)) < [0.9, 0.5, 0.1, 0.02, 0.0]
    groups[:, 0] |= np.arange(len(reference)) % 7 == 0  # correlated membership patterns
    brute = 0.5 * np.abs(queries[:, None, :] - reference[None, :, :]).sum(axis=2)
    for many_patterns in (False, True):
        monkeypatch.setattr(applicability, "PATTERNS_PER_GROUP", 0 if many_patterns else 16)
        found = nearest_by_group(queries, GroupedIndex(ReferenceIndex(reference), groups), chunk_size=64)
        for g in range(groups.shape[1]):
            if not groups[:, g].any():
                assert np.isnan(found[:, g]).all()
                continue
            np.testing.assert_allclose(found[:, g], brute[:, groups[:, g]].min(axis=1), atol=2e-6)
            np.testing.assert_array_equal(found[:, g], nearest(queries, reference[groups[:, g]])[1])


def test_the_grouped_search_handles_empty_and_single_element_sets():
    from fm_engine.applicability import GroupedIndex, ReferenceIndex, nearest_by_group

    reference = parse_many(["Fe", "Ni", "FeNi"]).weights
    for rows in ([0, 1], [0, 1, 2]):  # without and with references of two or more elements
        grouped = GroupedIndex(ReferenceIndex(reference[rows]), np.ones((len(rows), 1), bool))
        found = nearest_by_group(parse_many(["Fe", "Fe3Ni", "NaCl", "FeNiCo"]).weights, grouped)
        expected = nearest(parse_many(["Fe", "Fe3Ni", "NaCl", "FeNiCo"]).weights, reference[rows])[1]
        np.testing.assert_array_equal(found[:, 0], expected)
    assert nearest_by_group(np.zeros((0, 94)), grouped).shape == (0, 1)


def test_distinct_rows_gives_each_row_its_pattern():
    from fm_engine.applicability import distinct_rows

    rng = np.random.default_rng(1)
    for columns in (1, 5, 70):  # one integer code per row up to 62 columns, a row sort beyond
        flags = rng.random((300, columns)) < 0.3
        flags[150:] = flags[:150]
        patterns, index = distinct_rows(flags)
        np.testing.assert_array_equal(patterns[index], flags)
        assert len(patterns) == len(np.unique(flags, axis=0))


def test_the_index_bounds_equal_the_dense_maxima():
    from fm_engine.applicability import ReferenceIndex

    rng = np.random.default_rng(2)
    reference = _random_compositions(rng, 200, pool=[1, 7, 25, 26, 40, 80], most=4, grid=4)
    for given in (reference, reference.astype(np.float32)):  # float32 (a corpus's weights) read as float64
        index = ReferenceIndex(given)
        dense = given.astype(np.float64)
        np.testing.assert_array_equal(index.best_value, dense.max(axis=0))
        np.testing.assert_array_equal(index.best_ref, dense.argmax(axis=0))  # the first reference at the maximum
        np.testing.assert_array_equal(index.weights, dense)
        assert index.normalised and not ReferenceIndex(given * 2).normalised


@pytest.mark.parametrize(
    ("distance", "tested_up_to", "beyond"),
    [
        (0.5, 0.5, True),  # at the furthest test composition: the test error does not cover it
        (np.float32(0.5) - 1e-7, 0.5, True),  # the same in float32
        (0.6, 0.5, True),
        (0.49, 0.5, False),
        (0.0, 0.0, False),  # a training composition, even when every test composition is one too
        (1.0, float("nan"), False),  # no test compositions: nothing to compare with
    ],
)
def test_a_distance_equal_to_the_tested_range_is_beyond_it(distance, tested_up_to, beyond):
    assert bool(is_beyond_tested(distance, tested_up_to)) is beyond


@pytest.fixture(scope="module")
def hea_only(tmp_path_factory):
    """A tiny model of the HEA phase alone, on the bundled HEA dataset: its furthest test composition is 0.5 from
    the training alloys, and so is NaCl (an alloy with Na or Cl at 50 % is in the data)."""
    from fm_engine.datasets import bundled_task
    from fm_engine.training import TrainConfig, train

    folder = tmp_path_factory.mktemp("hea_only")
    bundled_task("hea_phase").frame().to_csv(folder / "phase.csv", index=False)
    config = TrainConfig.from_dict({
        "name": "hea-only", "seed": 7,
        "tasks": [{"name": "hea_phase", "type": "classification", "data_files": [str(folder / "phase.csv")]}],
        "model": {"encoder": {"type": "mlp", "hidden_dims": [32, 16]}},
        "trainer": {"max_epochs": 1, "patience": 5, "progress_bar": False},
    })  # fmt: skip
    result = train(config, folder / "run")
    assert result.state == "done"
    return load_checkpoint(result.checkpoint)


def test_nacl_on_an_hea_only_model_is_flagged_at_the_tested_range(hea_only, tmp_path, capsys):
    from workbench.components.predictions import extrapolation_warning, predict_formula

    tested = training_domain(hea_only, "hea_phase").tested_up_to
    table = predict_frame(hea_only, pd.DataFrame({"composition": ["NaCl"]}))
    assert table.loc[0, "hea_phase_distance_to_training"] == pytest.approx(tested, abs=1e-6)  # exactly at the edge
    assert table.loc[0, "extrapolated_for"] == "hea_phase"
    (phase,) = predict_formula(hea_only, "NaCl").tasks
    assert phase.extrapolated
    assert f"distance {tested:.2f}, furthest test composition at {tested:.2f}" in extrapolation_warning([phase])
    pd.DataFrame({"formula": ["NaCl"]}).to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", "--checkpoint", str(hea_only.path), "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "out.csv"), "--no-progress"]) == 0  # fmt: skip
    assert "warning: hea_phase: 1 row is as far" in capsys.readouterr().out
