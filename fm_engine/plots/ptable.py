"""Periodic-table heatmap (plotly), H..Pu, lanthanides and actinides in their own rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from fm_engine.elements import element_symbols

_PERIOD_STARTS = (1, 3, 11, 19, 37, 55, 87)


def element_position(z: int) -> tuple[int, int]:
    """(row, column) of element ``z`` in the usual 18-column layout; f-block rows are 8 and 9 (0-based)."""
    if 57 <= z <= 71:
        return 8, 2 + (z - 57)
    if 89 <= z <= 103:
        return 9, 2 + (z - 89)
    period = max(i for i, start in enumerate(_PERIOD_STARTS) if z >= start)
    offset = z - _PERIOD_STARTS[period]
    if period == 0:
        return 0, 0 if z == 1 else 17
    if period in (1, 2):
        return period, offset if offset < 2 else offset + 10
    if period in (3, 4):
        return period, offset
    # periods 6 and 7: s-block, then (after the f-block) groups 4..18
    return period, offset if offset < 2 else offset - 14


def ptable_heatmap(
    values: Mapping[str, float],
    *,
    title: str = "",
    colorbar_title: str = "",
    highlight: Iterable[str] = (),
    highlight_label: str = "",
    value_format: str = ".2g",
    colorscale: str = "Viridis",
    **layout: Any,
) -> go.Figure:
    """A heatmap over the periodic table (H..Pu) of ``values`` (symbol -> value, in the unit that
    ``colorbar_title`` names; shown with ``value_format``). Elements missing from ``values`` are grey;
    ``highlight`` elements get a red frame (e.g. elements a design introduced that no seed contained).
    ``layout``: passed to ``figure.update_layout`` last (e.g. ``height=600``)."""
    rows, cols = 10, 18
    z = np.full((rows, cols), np.nan)
    text = np.full((rows, cols), "", dtype=object)
    hover = np.full((rows, cols), "", dtype=object)
    positions = {}
    for number, symbol in enumerate(element_symbols(), start=1):
        r, c = element_position(number)
        positions[symbol] = (r, c)
        value = values.get(symbol)
        if value is not None and np.isfinite(value):
            z[r, c] = value
            text[r, c] = f"<b>{symbol}</b><br>{value:{value_format}}"
            hover[r, c] = f"{symbol}: {value:{value_format}}"
        else:
            text[r, c] = symbol
            hover[r, c] = f"{symbol}: -"
    empty = np.where(np.isnan(z) & (text != ""), 0.0, np.nan)  # grey tiles for elements without a value
    figure = go.Figure()
    figure.add_trace(
        go.Heatmap(z=empty, colorscale=[[0, "#eeeeee"], [1, "#eeeeee"]], showscale=False, hoverinfo="skip",
                   xgap=2, ygap=2, name="no value")
    )  # fmt: skip
    figure.add_trace(
        go.Heatmap(
            z=z, text=text, texttemplate="%{text}", hovertext=hover, hoverinfo="text", colorscale=colorscale,
            colorbar={"title": {"text": colorbar_title}}, xgap=2, ygap=2, textfont={"size": 10},
        )
    )  # fmt: skip
    highlighted = [s for s in highlight if s in positions]
    for symbol in highlighted:
        r, c = positions[symbol]
        figure.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5, line={"color": "red", "width": 3})
    if highlighted and highlight_label:
        figure.add_annotation(
            x=2, y=-0.9, text=f"<span style='color:red'>&#9633;</span> {highlight_label}", showarrow=False,
            xanchor="left", font={"size": 12},
        )  # fmt: skip
    figure.update_layout(
        title=title,
        xaxis={"visible": False, "range": [-0.5, cols - 0.5]},
        yaxis={"visible": False, "autorange": "reversed", "scaleanchor": "x"},
        plot_bgcolor="white",
        margin={"l": 10, "r": 10, "t": 50 if title else 10, "b": 10},
        height=430,
    )
    figure.update_layout(**layout)
    return figure
