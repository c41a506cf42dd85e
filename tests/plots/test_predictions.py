"""Prediction figures: each plotted number comes from the arguments; layout options pass through."""

import numpy as np

from fm_engine.plots import class_probabilities, predicted_curve


def test_class_probabilities_highlights_the_predicted_class():
    probabilities = {"BCC": 0.2, "FCC": 0.7, "HCP": 0.1}
    figure = class_probabilities(probabilities=probabilities, predicted="FCC", title="phase")
    plotted = {x: y for trace in figure.data for x, y in zip(trace.x, trace.y, strict=True)}
    assert plotted == probabilities
    highlighted = next(trace for trace in figure.data if trace.name == "True")
    assert list(highlighted.x) == ["FCC"]
    assert figure.layout.title.text == "phase" and list(figure.layout.yaxis.range) == [0, 1]
    assert figure.layout.height == 300 and figure.layout.showlegend is False
    assert class_probabilities(probabilities=probabilities, predicted="BCC", height=500).layout.height == 500


def test_predicted_curve_plots_the_values_over_t_with_labelled_axes():
    t, values = np.array([300.0, 600.0, 900.0]), np.array([800.0, 650.0, 400.0])
    figure = predicted_curve(t=t, values=values, name="yield_strength", t_label="temperature (K)",
                             y_label="yield_strength (MPa)", title="curve")  # fmt: skip
    np.testing.assert_array_equal(figure.data[0].x, t)
    np.testing.assert_array_equal(figure.data[0].y, values)
    assert figure.layout.xaxis.title.text == "temperature (K)"
    assert figure.layout.yaxis.title.text == "yield_strength (MPa)"
    assert predicted_curve(t=t, values=values, name="y", height=200, title="other").layout.title.text == "other"
