"""Prediction plots: a classification task's class probabilities and a sequence task's predicted curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

PREDICTED_COLOR = "#1f77b4"
OTHER_COLOR = "#aec7e8"


def class_probabilities(
    *, probabilities: Mapping[str, float], predicted: str, title: str = "", **layout: Any
) -> go.Figure:
    """Bar chart of class probabilities (0..1), the ``predicted`` class highlighted; ``layout`` is passed to
    ``fig.update_layout`` (default: no legend, 300 px high)."""
    frame = pd.DataFrame({"class": list(probabilities), "probability": list(probabilities.values())})
    frame["predicted"] = frame["class"] == predicted
    figure = px.bar(
        frame,
        x="class",
        y="probability",
        color="predicted",
        color_discrete_map={True: PREDICTED_COLOR, False: OTHER_COLOR},
        range_y=[0, 1],
        title=title,
    )
    figure.update_layout(**({"showlegend": False, "height": 300, "margin": {"t": 40, "b": 0}} | layout))
    return figure


def predicted_curve(
    *,
    t: Sequence[float],
    values: Sequence[float],
    name: str,
    t_label: str = "t",
    y_label: str = "",
    title: str = "",
    **layout: Any,
) -> go.Figure:
    """A predicted curve ``values`` over ``t`` (axis labels with units); ``layout`` is passed to
    ``fig.update_layout`` (default: 320 px high)."""
    figure = go.Figure(go.Scatter(x=list(t), y=list(values), mode="lines", name=name))
    figure.update_layout(
        **(
            {
                "title": title,
                "xaxis_title": t_label,
                "yaxis_title": y_label or name,
                "height": 320,
                "margin": {"t": 40, "b": 0},
            }
            | layout
        )  # fmt: skip
    )
    return figure
