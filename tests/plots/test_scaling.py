"""The scaling figure: a task's test and validation error vs its training compositions (log-log)."""

import math

import pandas as pd
import pytest

from fm_engine.plots import scaling_figure

TABLE = pd.DataFrame(
    [
        {"ratio": r, "task": task, "unit": unit, "metric": metric, "n_train": n, "val_error": v, "test_error": t}
        for task, unit, metric in (("bulk", "GPa", "mae"), ("phase", math.nan, "error"))  # CSV: no unit -> NaN
        for r, n, v, t in ((1.0, 400, 9.0, 10.0), (0.25, 100, 18.0, 20.0))
    ]
)


def test_the_thinned_tasks_errors_vs_training_compositions_with_the_fitted_slope():
    figure = scaling_figure(TABLE, task="bulk")
    test, val = figure.data
    assert (test.name, list(test.x), list(test.y)) == ("test", [100, 400], [20.0, 10.0])
    assert (val.name, list(val.x), list(val.y)) == ("validation", [100, 400], [18.0, 9.0])
    assert figure.layout.xaxis.title.text == "training compositions"
    assert figure.layout.yaxis.title.text == "MAE (GPa)"
    assert figure.layout.xaxis.type == figure.layout.yaxis.type == "log"
    slope = math.log(10.0 / 20.0) / math.log(400 / 100)
    assert figure.layout.annotations[0].text == f"test slope {slope:.2f} (log-log)"


def test_a_classification_is_labelled_error_rate_without_a_unit():
    assert scaling_figure(TABLE, task="phase").layout.yaxis.title.text == "error rate"


def test_layout_passes_through_and_the_task_is_keyword_only():
    figure = scaling_figure(TABLE, task="bulk", height=250, yaxis_type="linear")
    assert figure.layout.height == 250 and figure.layout.yaxis.type == "linear"
    with pytest.raises(TypeError):
        scaling_figure(TABLE, "bulk")  # type: ignore[misc]
