"""Scaling-law figure: a task's error vs its amount of training data (``fm scaling``'s scaling.csv)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fm_engine.cards import METRIC_LABELS


def scaling_figure(table: pd.DataFrame, *, task: str, **layout: Any) -> go.Figure:
    """Log-log: ``task``'s test and validation error (its headline metric, in the task's unit; error rate
    for a classification) vs its training compositions, with the fitted log-log slope of the test error.

    ``table``: scaling.csv's long table (columns ratio, task, unit, metric, n_train, val_error,
    test_error). ``layout``: passed to ``figure.update_layout``.
    """

    rows = table[table["task"] == task].sort_values("n_train")
    unit = rows["unit"].iloc[0] if len(rows) else ""
    metric = rows["metric"].iloc[0] if len(rows) else ""
    figure = go.Figure()
    for column, name in (("test_error", "test"), ("val_error", "validation")):
        figure.add_trace(go.Scatter(x=rows["n_train"], y=rows[column], mode="lines+markers", name=name))
    if len(rows) >= 2 and (rows["test_error"] > 0).all():
        slope = np.polyfit(np.log(rows["n_train"]), np.log(rows["test_error"]), 1)[0]
        figure.add_annotation(text=f"test slope {slope:.2f} (log-log)", x=0.02, y=0.98, xref="paper", yref="paper",
                              showarrow=False, xanchor="left")  # fmt: skip
    metric = METRIC_LABELS.get(metric, metric)
    label = f"{metric} ({unit})" if isinstance(unit, str) and unit else metric
    figure.update_layout(title=f"{task}: error vs training data", xaxis_title="training compositions",
                         yaxis_title=label, xaxis_type="log", yaxis_type="log", height=420)  # fmt: skip
    figure.update_layout(**layout)
    return figure
