"""The forgetting figure, from the forgetting table a rehearsal writes."""

import math

import pandas as pd

from fm_engine.plots import forgetting_figure
from fm_engine.training.rehearsal import forgetting_table


def _metrics() -> pd.DataFrame:
    """Test errors after each of two steps: bulk (MAE, GPa) learned at step 1, phase (error rate) at 2."""
    rows = [
        (1, "bulk", "regression", "mae", 10.0, "GPa"),
        (2, "bulk", "regression", "mae", 12.0, "GPa"),
        (2, "phase", "classification", "error", 0.25, ""),
    ]
    keys = ("step", "task", "type", "metric", "value", "unit")
    return pd.DataFrame([dict(zip(keys, row, strict=True)) | {"split": "test"} for row in rows])


def test_one_panel_per_task_with_its_test_error_after_each_step_in_its_unit():
    figure = forgetting_figure(forgetting_table(_metrics(), ["bulk", "phase"]))
    bulk, phase = figure.data
    assert list(bulk.x) == [1, 2] and list(bulk.y) == [10.0, 12.0]
    assert list(phase.x) == [1, 2] and math.isnan(phase.y[0]) and phase.y[1] == 0.25  # not learned at step 1
    assert figure.layout.yaxis.title.text == "test MAE (GPa)"
    assert figure.layout.yaxis2.title.text == "test error rate"
    assert list(figure.layout.xaxis.ticktext) == ["1: +bulk", "2: +phase"]
    assert figure.layout.xaxis.title.text == "after step"
    assert [a.text for a in figure.layout.annotations] == ["bulk", "phase"]


def test_layout_passes_through():
    figure = forgetting_figure(forgetting_table(_metrics(), ["bulk", "phase"]), height=700, title="mine")
    assert figure.layout.height == 700 and figure.layout.title.text == "mine"
