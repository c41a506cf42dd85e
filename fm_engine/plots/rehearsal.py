"""Continual-rehearsal figure: each task's test error after every step (``fm rehearsal``'s forgetting.csv)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fm_engine.cards import METRIC_LABELS


def forgetting_figure(table: pd.DataFrame, **layout: Any) -> go.Figure:
    """One panel per task: its headline test error (in the task's unit; error rate for a classification)
    after each step, from the step that added the task on; x ticks name the task each step added.

    ``table``: forgetting.csv (columns task, metric, unit, step_1 ... step_N, ...; NaN before a task was
    learned). ``layout``: passed to ``figure.update_layout``.
    """

    step_columns = [c for c in table.columns if c.startswith("step_")]
    steps = [int(c.split("_")[1]) for c in step_columns]
    learned_at = {row["task"]: next((s for s, c in zip(steps, step_columns, strict=True) if pd.notna(row[c])), None)
                  for _, row in table.iterrows()}  # fmt: skip
    labels = {step: f"{step}: +{task}" for task, step in learned_at.items() if step is not None}
    n = max(len(table), 1)
    figure = make_subplots(rows=1, cols=n, subplot_titles=list(table["task"]) or [""], horizontal_spacing=0.25 / n)
    for j, (_, row) in enumerate(table.iterrows(), start=1):
        values = [row[c] for c in step_columns]
        figure.add_trace(
            go.Scatter(x=steps, y=values, mode="lines+markers", name=row["task"], showlegend=False,
                       hovertemplate="after step %{x}: %{y:.4g}<extra>" + row["task"] + "</extra>"),
            row=1, col=j,
        )  # fmt: skip
        unit = row.get("unit")
        metric = METRIC_LABELS[row["metric"]]
        label = f"test {metric} ({unit})" if isinstance(unit, str) and unit else f"test {metric}"
        figure.update_yaxes(title_text=label, rangemode="tozero", row=1, col=j)  # errors start at 0
        figure.update_xaxes(title_text="after step", tickvals=steps, ticktext=[labels.get(s, str(s)) for s in steps],
                            range=[0.7, len(steps) + 0.3], row=1, col=j)  # fmt: skip
    figure.update_layout(title="Forgetting: each task's test error after every step (lower is better)",
                         height=380, margin={"t": 80})  # fmt: skip
    figure.update_layout(**layout)
    return figure
