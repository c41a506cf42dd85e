"""fm_engine.plots.calibration: expected vs observed coverage, per task, calibrated and raw."""

from fm_engine.plots import calibration_figure


def test_one_solid_and_one_dotted_line_per_task_beside_the_diagonal():
    expected = [0.5, 0.9]
    figure = calibration_figure(expected=expected, after={"a": [0.4, 0.8], "b": [0.6, 0.95]},
                                before={"a": [0.1, 0.2]})  # fmt: skip
    names = [trace.name for trace in figure.data]
    assert names == ["ideal", "a", "a (raw std)", "b"]
    assert list(figure.data[0].x) == list(figure.data[0].y) == [0, 1]
    assert list(figure.data[2].y) == [0.1, 0.2] and figure.data[2].line.dash == "dot"
    assert figure.data[1].line.color == figure.data[2].line.color != figure.data[3].line.color
    assert figure.layout.xaxis.title.text.startswith("expected") and figure.layout.height == 380
