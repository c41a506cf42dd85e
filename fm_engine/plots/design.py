"""Design plots: pure functions of result tables that return plotly figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fm_engine.columns import seed_column, std_column, with_unit
from fm_engine.plots.ptable import ptable_heatmap


def element_frequency(table: pd.DataFrame) -> dict[str, float]:
    """Share of recipes (0..1) containing each element (columns ``x_<symbol>``)."""
    columns = [c for c in table.columns if c.startswith("x_")]
    return {c[2:]: float((table[c] > 0).mean()) for c in columns if (table[c] > 0).any()}


def recipe_heatmap(
    table: pd.DataFrame, seed_elements: Sequence[str] = (), *, title: str = "", **layout: Any
) -> go.Figure:
    """Periodic table of how often each element appears in the designed recipes (% of recipes); elements
    absent from every seed (``seed_elements``) framed. ``layout``: passed to ``figure.update_layout``."""
    frequency = element_frequency(table)
    new = [s for s in frequency if s not in set(seed_elements)] if seed_elements else []
    return ptable_heatmap(
        {s: 100 * v for s, v in frequency.items()},
        title=title or "Element frequency in designed recipes",
        colorbar_title="% of recipes",
        highlight=new,
        highlight_label="absent from every seed",
        value_format=".0f",
        **layout,
    )


def seed_vs_optimized(
    table: pd.DataFrame,
    column: str,
    *,
    unit: str = "",
    target: float | Sequence[float] | None = None,
    error_bars: bool = True,
    **layout: Any,
) -> go.Figure:
    """Seed value (x) vs designed value (y) of one target, both in ``unit`` (the table's columns
    ``<column> seed [<unit>]`` and ``<column> [<unit>]``), with the 1:1 line and the target line(s) (a value,
    or the ends of a range, in ``unit``). ``error_bars``: +/- 1 std on each axis where the table has the spread
    columns ``<column> seed_std [<unit>]`` / ``<column>_std [<unit>]`` (an ensemble's design; a single model's
    table has none, so no bars). ``layout``: passed to ``figure.update_layout``."""
    header = with_unit(column, unit)
    seed = table[seed_column(header)]
    designed = table[header]
    errors: dict[str, dict[str, Any]] = {}
    extent = [seed.to_numpy(dtype=float), designed.to_numpy(dtype=float)]
    for axis, name, values in (("x", std_column(seed_column(header)), seed), ("y", std_column(header), designed)):
        if error_bars and name in table.columns:
            spread = table[name].to_numpy(dtype=float)
            errors[f"error_{axis}"] = {"type": "data", "array": spread, "visible": True}
            extent += [values.to_numpy(dtype=float) - spread, values.to_numpy(dtype=float) + spread]
    low = float(np.nanmin(np.concatenate(extent)))
    high = float(np.nanmax(np.concatenate(extent)))
    pad = 0.05 * (high - low or 1.0)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[low - pad, high + pad], y=[low - pad, high + pad], mode="lines",
                                line={"dash": "dot", "color": "grey"}, name="1:1 (no change)"))  # fmt: skip
    for value in [target] if isinstance(target, int | float) else list(target or []):
        figure.add_hline(y=float(value), line={"color": "crimson", "dash": "dash"},
                         annotation_text=f"target {value:g} {unit}".strip())  # fmt: skip
    figure.add_trace(
        go.Scatter(
            x=seed, y=designed, mode="markers", name="recipes", marker={"size": 9}, **errors,
            text=table["formula"] + "<br>from " + table["seed"].astype(str),
            hovertemplate="%{text}<br>seed %{x:.4g} -> %{y:.4g}<extra></extra>",
        )
    )  # fmt: skip
    label = f"{column} ({unit})" if unit else column
    figure.update_layout(title=f"{column}: seed -> designed", xaxis_title=f"seed {label}",
                         yaxis_title=f"designed {label}", height=420)  # fmt: skip
    figure.update_layout(**layout)
    return figure


def compare_runs(tables: Mapping[str, pd.DataFrame], columns: Sequence[str], **layout: Any) -> go.Figure:
    """Mean +/- std (population) of ``columns`` (objective and targets, in the columns' own units) across runs
    or methods (``tables``: name -> recipes), one panel per column. ``layout``: passed to ``figure.update_layout``."""
    figure = make_subplots(rows=1, cols=len(columns), subplot_titles=list(columns))
    names = list(tables)
    for j, column in enumerate(columns, start=1):
        means = [float(tables[n][column].mean()) for n in names]
        stds = [float(tables[n][column].std(ddof=0)) for n in names]
        figure.add_trace(go.Bar(x=names, y=means, error_y={"type": "data", "array": stds}, showlegend=False),
                         row=1, col=j)  # fmt: skip
    figure.update_layout(title="Runs compared (mean +/- std over recipes)", height=380)
    figure.update_layout(**layout)
    return figure


def trajectory_figure(trajectory: Sequence[Mapping[str, Sequence[float]]], **layout: Any) -> go.Figure:
    """Objective and each target's term (normalised units) vs optimisation step: mean over the recipes with
    a min-max band, one panel per term. ``layout``: passed to ``figure.update_layout``."""
    if not trajectory:
        raise ValueError("no trajectory recorded (set record_trajectory: true)")
    steps = [record["step"][0] for record in trajectory]
    keys = [k for k in trajectory[0] if k != "step"]
    figure = make_subplots(rows=len(keys), cols=1, shared_xaxes=True, subplot_titles=keys, vertical_spacing=0.06)
    for i, key in enumerate(keys, start=1):
        values = np.array([record[key] for record in trajectory])
        figure.add_trace(go.Scatter(x=steps + steps[::-1], y=list(values.max(1)) + list(values.min(1))[::-1],
                                    fill="toself", line={"width": 0}, opacity=0.2, showlegend=False,
                                    hoverinfo="skip"), row=i, col=1)  # fmt: skip
        figure.add_trace(go.Scatter(x=steps, y=values.mean(1), name=key, mode="lines"), row=i, col=1)
    figure.update_layout(title="Objective terms vs step (lower is better; normalised units)",
                         height=220 * len(keys) + 80, showlegend=False)  # fmt: skip
    figure.update_xaxes(title_text="step", row=len(keys), col=1)
    figure.update_layout(**layout)
    return figure


def pareto_front(
    table: pd.DataFrame, x: str, y: str, *, maximize: tuple[bool, bool] = (True, True), **layout: Any
) -> go.Figure:
    """Two target columns against each other (axes titled with the column names, which carry the unit, e.g.
    ``bulk_modulus [GPa]``); the non-dominated recipes joined as the Pareto front (``maximize``: per axis,
    higher is better). ``layout``: passed to ``figure.update_layout``."""
    values = table[[x, y]].to_numpy(dtype=float) * np.where(maximize, 1.0, -1.0)
    # dominated[i]: some recipe j is at least as good on both targets and strictly better on one
    at_least = (values[None, :, :] >= values[:, None, :]).all(axis=2)
    better = (values[None, :, :] > values[:, None, :]).any(axis=2)
    dominated = (at_least & better).any(axis=1)
    front = table[~dominated].sort_values(x)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=table[x], y=table[y], mode="markers", name="recipes", text=table["formula"],
                                hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))  # fmt: skip
    figure.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines+markers", name="Pareto front",
                                line={"color": "crimson"}, text=front["formula"]))  # fmt: skip
    figure.update_layout(title="Pareto view", xaxis_title=x, yaxis_title=y, height=420)
    figure.update_layout(**layout)
    return figure
