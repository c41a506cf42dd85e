"""Curve and probability column names: one builder and one parser, the same in predictions and designs."""

import pandas as pd
import pytest

from fm_engine.checkpoints import load_checkpoint
from fm_engine.columns import curve_column, parse_curve_column, probability_column
from fm_engine.inverse import DesignConfig, Target, run_design
from fm_engine.predict import predict_frame


@pytest.mark.parametrize(
    ("task", "t"), [("yield_strength", 1073.0), ("yield_strength", 1273.5), ("a@b", 300.0), ("x", -12.25)]
)
def test_a_curve_column_parses_back_to_its_task_and_t(task, t):
    assert parse_curve_column(curve_column(task, t)) == (task, t)


@pytest.mark.parametrize("name", ["bulk_modulus", "P(hea_phase=BCC)", "@300", "yield_strength@", "a@b", "x@300K"])
def test_other_names_are_not_curve_columns(name):
    assert parse_curve_column(name) is None


def test_predictions_and_designs_name_curve_points_alike(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    grid = [300.0, 1073.0]
    frame = predict_frame(checkpoint, pd.DataFrame({"composition": ["NbMoTaW"]}), t_grids={"yield_strength": grid})
    predicted = [parse_curve_column(c) for c in frame.columns if parse_curve_column(c)]
    assert predicted == [("yield_strength", t) for t in grid]

    targets = [Target(task="yield_strength", points=[[t, 900.0] for t in grid]), Target(task="hea_phase", classes=[0])]
    config = DesignConfig(targets=targets, seeds={"source": "random", "n": 2}, steps=4)
    result = run_design(checkpoint, config)
    assert list(result.units) == [curve_column("yield_strength", t) for t in grid] + [
        probability_column("hea_phase", checkpoint.model.tasks["hea_phase"].classes[:1])
    ]
    designed = [parse_curve_column(c.removesuffix(" [MPa]")) for c in result.table.columns if c.endswith(" [MPa]")]
    assert designed == [("yield_strength", t) for t in grid]
