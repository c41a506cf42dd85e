"""Prediction plots: a classification task's class probabilities, a sequence task's predicted curve (with an
ensemble's band) and per-composition predictions with error bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

PREDICTED_COLOR = "#1f77b4"
OTHER_COLOR = "#aec7e8"
BAND_COLOR = "rgba(31, 119, 180, 0.2)"  # PREDICTED_COLOR, translucent


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
    std: Sequence[float] | None = None,
    band_name: str = "mean +/- std",
    **layout: Any,
) -> go.Figure:
    """A predicted curve ``values`` over ``t`` (axis labels with units), with a shaded band ``values +/- std`` when
    ``std`` is given (an ensemble's calibrated spread, same unit); ``layout`` is passed to ``fig.update_layout``
    (default: 320 px high)."""
    figure = go.Figure()
    if std is not None:
        mean, spread = np.asarray(values, dtype=float), np.asarray(std, dtype=float)
        figure.add_trace(go.Scatter(x=list(t) + list(t)[::-1], y=list(mean + spread) + list(mean - spread)[::-1],
                                    fill="toself", fillcolor=BAND_COLOR, line={"width": 0}, hoverinfo="skip",
                                    name=band_name))  # fmt: skip
    figure.add_trace(go.Scatter(x=list(t), y=list(values), mode="lines", name=name, line={"color": PREDICTED_COLOR}))
    figure.update_layout(
        **(
            {
                "title": title,
                "xaxis_title": t_label,
                "yaxis_title": y_label or name,
                "height": 320,
                "margin": {"t": 40, "b": 0},
                "showlegend": std is not None,
            }
            | layout
        )  # fmt: skip
    )
    return figure


def predictions_with_error_bars(
    *,
    labels: Sequence[str],
    values: Sequence[float],
    std: Sequence[float],
    y_label: str,
    title: str = "",
    **layout: Any,
) -> go.Figure:
    """One point per composition (``labels`` on the x axis, in the given order) at its predicted value with an
    error bar of +/- ``std`` (an ensemble's calibrated spread, same unit); ``layout`` is passed to
    ``fig.update_layout`` (default: 320 px high)."""
    figure = go.Figure(go.Scatter(
        x=list(labels), y=list(values), mode="markers", marker={"color": PREDICTED_COLOR},
        error_y={"type": "data", "array": list(std), "visible": True, "color": PREDICTED_COLOR},
        hovertemplate="%{x}: %{y:.4g} +/- %{error_y.array:.3g}<extra></extra>",
    ))  # fmt: skip
    figure.update_layout(**({"title": title, "yaxis_title": y_label, "height": 320, "margin": {"t": 40, "b": 0},
                             "xaxis": {"type": "category"}} | layout))  # fmt: skip
    return figure
