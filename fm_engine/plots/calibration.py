"""The calibration plot of an ensemble's spread: expected vs observed coverage of its intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go


def calibration_figure(
    *,
    expected: Sequence[float],
    after: Mapping[str, Sequence[float]],
    before: Mapping[str, Sequence[float]] | None = None,
    title: str = "Calibration of the spread (test split)",
    **layout: Any,
) -> go.Figure:
    """Per task, the share of test truths (0..1) inside the interval ``mean +/- z * std`` that a normal error would
    fill to each ``expected`` share, with the calibrated std (``after``: solid) and the members' raw std
    (``before``: dotted, same colour); the diagonal is a perfectly calibrated spread, below it intervals too narrow.
    ``layout`` is passed to ``fig.update_layout`` (default: 380 px high, square axes 0..1)."""
    figure = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="ideal",
                                  line={"color": "grey", "dash": "dash", "width": 1}))  # fmt: skip
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for i, (task, observed) in enumerate(after.items()):
        color = colors[i % len(colors)]
        figure.add_trace(go.Scatter(x=list(expected), y=list(observed), mode="lines+markers", name=task,
                                    line={"color": color}, legendgroup=task))  # fmt: skip
        if before is not None and task in before:
            figure.add_trace(go.Scatter(x=list(expected), y=list(before[task]), mode="lines", legendgroup=task,
                                        name=f"{task} (raw std)", line={"color": color, "dash": "dot"}))  # fmt: skip
    figure.update_layout(**({"title": title, "xaxis_title": "expected share inside the interval",
                             "yaxis_title": "observed share of test truths inside", "height": 380,
                             "xaxis": {"range": [0, 1]}, "yaxis": {"range": [0, 1]},
                             "margin": {"t": 40, "b": 0}} | layout))  # fmt: skip
    return figure
