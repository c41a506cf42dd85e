"""Training-run figures from a run's ``metrics.jsonl`` records (:meth:`RunDirectory.read_metrics`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _epoch_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("kind") == "epoch"]


def _series(epochs: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(1-based epochs, values) of the records that hold ``key``."""
    kept = [r for r in epochs if r.get(key) is not None]
    return [r["epoch"] + 1 for r in kept], [r[key] for r in kept]


def loss_figure(records: Sequence[Mapping[str, Any]], tasks: Sequence[str], **layout: Any) -> go.Figure:
    """Training (solid) and validation (dashed) loss vs epoch (1-based), the total and one pair per task
    in ``tasks``; losses are in normalised units (the total is the weighted sum), log y axis.

    ``layout``: passed to ``figure.update_layout`` (e.g. ``height=500``, ``title=...``).
    """
    epochs = _epoch_records(records)
    figure = go.Figure()
    for task in ["loss", *tasks]:
        train_key = f"train/{task}" if task != "loss" else "train/loss"
        val_key = f"val/{task}/loss" if task != "loss" else "val/loss"
        x, y = _series(epochs, train_key)
        figure.add_trace(go.Scatter(x=x, y=y, name=f"{task} train", mode="lines", legendgroup=task))
        xv, yv = _series(epochs, val_key)
        figure.add_trace(go.Scatter(x=xv, y=yv, name=f"{task} val", mode="lines", line={"dash": "dash"},
                                    legendgroup=task))  # fmt: skip
    figure.update_layout(title="Loss per task (normalised units; total = weighted sum)", xaxis_title="epoch",
                         yaxis_title="loss", yaxis_type="log", height=380)  # fmt: skip
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
