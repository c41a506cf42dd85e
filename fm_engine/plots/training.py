"""Training-run figures from a run's ``metrics.jsonl`` records (:meth:`RunDirectory.read_metrics`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import DEFAULT_PLOTLY_COLORS as DEFAULT_COLORS
from plotly.subplots import make_subplots


def _epoch_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("kind") == "epoch"]


def _series(epochs: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(1-based epochs, values) of the records that hold ``key``."""
    kept = [r for r in epochs if r.get(key) is not None]
    return [r["epoch"] + 1 for r in kept], [r[key] for r in kept]


LEGEND_PER_ROW = 4  # legend entries per row of the loss figure's legend (below the plot)
LEGEND_ROW_PX = 24  # height of one legend row, px


def loss_figure(records: Sequence[Mapping[str, Any]], tasks: Sequence[str], **layout: Any) -> go.Figure:
    """Training (solid) and validation (dashed) loss vs epoch (1-based), the total and one pair per task
    in ``tasks``; losses are in normalised units (the total is the weighted sum), log y axis.

    The legend has one entry per task (a click hides both its curves), in rows below the plot; the figure grows by
    :data:`LEGEND_ROW_PX` px per row, so no entry is clipped however many tasks a run has.
    ``layout``: passed to ``figure.update_layout`` (e.g. ``height=500``, ``title=...``).
    """
    epochs = _epoch_records(records)
    figure = go.Figure()
    names = ["loss", *tasks]
    for i, task in enumerate(names):
        train_key = f"train/{task}" if task != "loss" else "train/loss"
        val_key = f"val/{task}/loss" if task != "loss" else "val/loss"
        label, color = ("total" if task == "loss" else task), DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
        for key, dash, what in ((train_key, None, "train"), (val_key, "dash", "validation")):
            x, y = _series(epochs, key)
            figure.add_trace(go.Scatter(
                x=x, y=y, name=label if dash is None else f"{label} val", mode="lines", legendgroup=task,
                line={"dash": dash, "color": color}, showlegend=dash is None,
                hovertemplate=f"{label} {what}: %{{y:.4g}}<extra></extra>",
            ))  # fmt: skip
    rows = -(-len(names) // LEGEND_PER_ROW)
    figure.update_layout(
        title="Loss per task (normalised units; total = weighted sum)", xaxis_title="epoch", yaxis_title="loss",
        yaxis_type="log", height=360 + LEGEND_ROW_PX * rows, hovermode="x unified",
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0,
                "title": {"text": "solid: training, dashed: validation  "}},
    )  # fmt: skip
    figure.update_layout(**layout)
    return figure


def metric_figure(
    records: Sequence[Mapping[str, Any]], tasks: Mapping[str, tuple[str, str]], **layout: Any
) -> go.Figure:
    """One panel per task with its main validation metric vs epoch (1-based), in physical units.

    ``tasks``: name -> (metric key, y-axis label with its unit), e.g. ``{"bulk_modulus": ("mae", "MAE (GPa)")}``.
    ``layout``: passed to ``figure.update_layout``.
    """
    epochs = _epoch_records(records)
    names = list(tasks)
    figure = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=names)
    for j, name in enumerate(names, start=1):
        key, label = tasks[name]
        x, y = _series(epochs, f"val/{name}/{key}")
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", showlegend=False), row=1, col=j)
        figure.update_yaxes(title_text=label, row=1, col=j)
        figure.update_xaxes(title_text="epoch", row=1, col=j)
    figure.update_layout(title="Validation metrics (physical units)", height=320)
    figure.update_layout(**layout)
    return figure
