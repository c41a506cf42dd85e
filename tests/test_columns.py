"""Curve and probability column names: one builder and one parser, the same in predictions and designs."""

import pandas as pd
import pytest

from fm_engine.checkpoints import load_checkpoint
from fm_engine.columns import (
    PROBABILITY_UNIT,
    change_column,
    class_probability_column,
    curve_column,
    parse_curve_column,
    probability_column,
    seed_column,
    split_unit,
    std_column,
    with_unit,
)
from fm_engine.inverse import DesignConfig, Target, run_design
from fm_engine.predict import predict_frame


@pytest.mark.parametrize(
    ("task", "t"), [("yield_strength", 1073.0), ("yield_strength", 1273.5), ("a@b", 300.0), ("x", -12.25)]
)
@pytest.mark.parametrize("t_unit", ["", "K", "°C", "eV"])
def test_a_curve_column_parses_back_to_its_task_and_t(task, t, t_unit):
    assert parse_curve_column(curve_column(task, t, t_unit)) == (task, t)
    assert parse_curve_column(with_unit(curve_column(task, t, t_unit), "MPa")) == (task, t)


def test_a_curve_column_names_the_unit_of_t_and_of_the_value():
    assert with_unit(curve_column("yield_strength", 1073.0, "K"), "MPa") == "yield_strength@1073K [MPa]"


@pytest.mark.parametrize("name", ["yield_strength@1073", "yield_strength@1073K", "yield_strength@1073 [MPa]"])
def test_names_written_before_units_still_parse(name):
    assert parse_curve_column(name) == ("yield_strength", 1073.0)


@pytest.mark.parametrize("name", ["bulk_modulus", "P(hea_phase=BCC)", "@300", "yield_strength@", "a@b", "x@K300"])
def test_other_names_are_not_curve_columns(name):
    assert parse_curve_column(name) is None


def test_every_value_column_names_its_unit():
    header = with_unit("bulk_modulus", "GPa")
    assert header == "bulk_modulus [GPa]" and split_unit(header) == ("bulk_modulus", "GPa")
    assert std_column(header) == "bulk_modulus_std [GPa]"
    assert seed_column(header) == "bulk_modulus seed [GPa]" and change_column(header) == "bulk_modulus change [GPa]"
    assert std_column(seed_column(header)) == "bulk_modulus seed_std [GPa]"
    assert class_probability_column("hea_phase", "BCC") == f"hea_phase_proba_BCC [{PROBABILITY_UNIT}]"
    assert with_unit("glass_forming", "") == "glass_forming" and split_unit("glass_forming") == ("glass_forming", "")


def test_predictions_and_designs_name_curve_points_alike(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    grid = [300.0, 1073.0]
    frame = predict_frame(checkpoint, pd.DataFrame({"composition": ["NbMoTaW"]}), t_grids={"yield_strength": grid})
    predicted = [parse_curve_column(c) for c in frame.columns if parse_curve_column(c)]
    assert predicted == [("yield_strength", t) for t in grid]

    targets = [Target(task="yield_strength", points=[[t, 900.0] for t in grid]), Target(task="hea_phase", classes=[0])]
    config = DesignConfig(targets=targets, seeds={"source": "random", "n": 2}, steps=4)
    result = run_design(checkpoint, config)
    assert list(result.units) == [curve_column("yield_strength", t, "K") for t in grid] + [
        probability_column("hea_phase", checkpoint.model.tasks["hea_phase"].classes[:1])
    ]
    designed = [parse_curve_column(c.removesuffix(" [MPa]")) for c in result.table.columns if c.endswith(" [MPa]")]
    assert designed == [("yield_strength", t) for t in grid]
    headers = [with_unit(curve_column("yield_strength", t, "K"), "MPa") for t in grid]  # yield_strength@300K [MPa]
    assert set(headers) <= set(frame.columns) & set(result.table.columns)
