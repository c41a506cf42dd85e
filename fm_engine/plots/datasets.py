"""Dataset plots: what one task's data looks like (class counts, the first curves, or a histogram)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

CURVES_SHOWN = 12


def task_data_figure(
    *,
    frame: pd.DataFrame,
    name: str,
    kind: str,
    value_column: str,
    unit: str = "",
    t_column: str | None = None,
    t_unit: str = "",
    composition_column: str = "composition",
    **layout: Any,
) -> go.Figure:
    """A task's rows: class counts (``kind`` classification), the first :data:`CURVES_SHOWN` curves (with a
    ``t_column``) or the distribution of ``value_column`` (in ``unit``); ``layout`` is passed to
    ``fig.update_layout``."""
    label = f"{name} ({unit})" if unit else name
    if kind == "classification":
        counts = frame[value_column].value_counts().rename_axis("class").reset_index(name="count")
        figure = px.bar(counts, x="class", y="count")
        defaults: dict[str, Any] = {"title": f"{name}: class counts"}
    elif t_column:
        first = frame[composition_column].drop_duplicates().head(CURVES_SHOWN)
        figure = px.line(
            frame[frame[composition_column].isin(first)],
            x=t_column,
            y=value_column,
            color=composition_column,
            markers=True,
            labels={t_column: f"{t_column} ({t_unit})", value_column: label},
        )
        defaults = {"title": f"{name}: first {CURVES_SHOWN} curves"}
    else:
        figure = px.histogram(frame, x=value_column, nbins=60, labels={value_column: label})
        defaults = {"title": f"{name}: distribution", "yaxis_title": "compositions"}
    figure.update_layout(**(defaults | layout))
    return figure
