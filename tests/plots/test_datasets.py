"""The dataset figure: class counts, the first curves, or the distribution of a task's values."""

import pandas as pd

from fm_engine.plots import task_data_figure
from fm_engine.plots.datasets import CURVES_SHOWN


def test_classification_shows_the_class_counts():
    frame = pd.DataFrame({"composition": ["Fe", "Ni", "Co", "Cr"], "phase": ["BCC", "FCC", "FCC", "FCC"]})
    figure = task_data_figure(frame=frame, name="phase", kind="classification", value_column="phase")
    assert dict(zip(figure.data[0].x, figure.data[0].y, strict=True)) == {"FCC": 3, "BCC": 1}
    assert figure.layout.title.text == "phase: class counts"


def test_curves_show_only_the_first_compositions_with_units():
    n = CURVES_SHOWN + 3
    frame = pd.DataFrame(
        {"composition": [f"Fe{i}" for i in range(n) for _ in (0, 1)], "T": [300, 600] * n, "ys": range(2 * n)}
    )
    figure = task_data_figure(frame=frame, name="ys", kind="kernel_regression", value_column="ys", unit="MPa",
                              t_column="T", t_unit="K")  # fmt: skip
    assert len(figure.data) == CURVES_SHOWN
    assert figure.layout.xaxis.title.text == "T (K)" and figure.layout.yaxis.title.text == "ys (MPa)"


def test_regression_shows_the_distribution_and_passes_layout_through():
    frame = pd.DataFrame({"composition": ["Fe", "Ni", "Co"], "k": [1.0, 2.0, 2.5]})
    figure = task_data_figure(frame=frame, name="k", kind="regression", value_column="k", unit="GPa", height=250)
    assert list(figure.data[0].x) == [1.0, 2.0, 2.5]
    assert figure.layout.xaxis.title.text == "k (GPa)" and figure.layout.yaxis.title.text == "compositions"
    assert figure.layout.height == 250
