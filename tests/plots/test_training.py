"""Training-run figures from metrics.jsonl records: every plotted point comes from the records."""

import math

from fm_engine.plots import loss_figure, metric_figure

RECORDS = [
    {"kind": "step", "epoch": 0, "step": 3, "train/loss": 9.0},  # step records are not plotted
    {"kind": "epoch", "epoch": 0, "train/loss": 2.0, "val/loss": 2.5, "train/bulk": 1.5, "val/bulk/loss": 1.8,
     "val/bulk/mae": 30.0, "val/phase/accuracy": 0.6},
    {"kind": "epoch", "epoch": 1, "train/loss": 1.0, "val/loss": 1.5, "train/bulk": 0.7, "val/bulk/loss": 0.9,
     "val/bulk/mae": 20.0},  # no accuracy this epoch
]  # fmt: skip


def test_loss_figure_has_a_train_and_a_validation_curve_per_task_by_1_based_epoch():
    figure = loss_figure(RECORDS, ["bulk"])
    curves = {trace.name: (list(trace.x), list(trace.y)) for trace in figure.data}
    assert curves == {
        "total": ([1, 2], [2.0, 1.0]),
        "total val": ([1, 2], [2.5, 1.5]),
        "bulk": ([1, 2], [1.5, 0.7]),
        "bulk val": ([1, 2], [1.8, 0.9]),
    }
    assert [t.line.dash for t in figure.data] == [None, "dash", None, "dash"]
    assert figure.data[2].line.color == figure.data[3].line.color != figure.data[0].line.color
    assert figure.layout.xaxis.title.text == "epoch"
    assert figure.layout.yaxis.type == "log"
    assert "normalised units" in figure.layout.title.text


def test_the_loss_legend_has_one_entry_per_task_below_the_plot_and_grows_with_the_tasks():
    """Not clipped: a demo-sized run (8 tasks and the autoencoder) puts its legend in rows under the plot."""
    tasks = [f"task_{i}" for i in range(9)]
    figure = loss_figure(RECORDS, tasks)
    shown = [t.name for t in figure.data if t.showlegend is not False]
    assert shown == ["total", *tasks]  # one entry per task; its dashed validation curve shares it
    assert {t.legendgroup for t in figure.data if t.name.endswith(" val")} == {"loss", *tasks}
    legend = figure.layout.legend
    assert legend.orientation == "h" and legend.y < 0 and legend.yanchor == "top"
    assert "dashed: validation" in legend.title.text
    assert figure.layout.height > loss_figure(RECORDS, ["bulk"]).layout.height


def test_metric_figure_has_one_panel_per_task_with_its_unit_and_skips_missing_epochs():
    figure = metric_figure(RECORDS, {"bulk": ("mae", "MAE (GPa)"), "phase": ("accuracy", "accuracy")})
    bulk, phase = figure.data
    assert (list(bulk.x), list(bulk.y)) == ([1, 2], [30.0, 20.0])
    assert (list(phase.x), list(phase.y)) == ([1], [0.6])
    assert figure.layout.yaxis.title.text == "MAE (GPa)"
    assert figure.layout.yaxis2.title.text == "accuracy"
    assert [a.text for a in figure.layout.annotations] == ["bulk", "phase"]
    assert "physical units" in figure.layout.title.text


def test_training_figures_pass_layout_through():
    assert loss_figure(RECORDS, [], height=500, title="mine").layout.height == 500
    assert loss_figure(RECORDS, [], title="mine").layout.title.text == "mine"
    figure = metric_figure(RECORDS, {"bulk": ("mae", "MAE (GPa)")}, height=222, yaxis_type="log")
    assert figure.layout.height == 222 and figure.layout.yaxis.type == "log"
    assert math.isclose(metric_figure([], {}).layout.height, 320)  # no records yet: an empty panel
