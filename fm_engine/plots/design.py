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

REPORTED_DECIMALS = 3  # the formula's precision: recipes equal at it are one recipe when counted without a rule


def distinct_recipes(table: pd.DataFrame) -> pd.DataFrame:
    """The recipes of a design table counted once: those the design did not mark as a near-duplicate of a better
    one (``duplicate_of_rank`` 0), else those distinct at the reported precision. The one place that decides what
    counts as one recipe in the figures."""
    if "duplicate_of_rank" in table.columns:
        return table[table["duplicate_of_rank"] == 0]
    columns = [c for c in table.columns if c.startswith("x_")]
    return table[~table[columns].round(REPORTED_DECIMALS).duplicated()]


def element_counts(table: pd.DataFrame) -> dict[str, int]:
    """Number of distinct recipes (:func:`distinct_recipes`) containing each element (``x_<symbol>`` > 0)."""
    distinct = distinct_recipes(table)
    columns = [c for c in distinct.columns if c.startswith("x_")]
    return {c[2:]: int((distinct[c] > 0).sum()) for c in columns if (distinct[c] > 0).any()}


def element_frequency(table: pd.DataFrame) -> dict[str, float]:
    """Share of the distinct recipes (0..1, :func:`distinct_recipes`) containing each element (``x_<symbol>``)."""
    n = len(distinct_recipes(table))
    return {symbol: count / n for symbol, count in element_counts(table).items()}


def recipe_heatmap(
    table: pd.DataFrame,
    seed_elements: Sequence[str] = (),
    *,
    allowed: Sequence[str] | None = None,
    title: str = "",
    **layout: Any,
) -> go.Figure:
    """Periodic table of how many distinct recipes (:func:`distinct_recipes`) contain each element; elements absent
    from every seed (``seed_elements``) framed. With ``allowed`` (the design's allowed elements), allowed elements no
    recipe uses are drawn light with a 0 and the elements that were not allowed grey and struck through, with a
    legend. ``layout``: passed to ``figure.update_layout``."""
    counts = element_counts(table)
    new = [s for s in counts if s not in set(seed_elements)] if seed_elements else []
    return ptable_heatmap(
        {symbol: float(count) for symbol, count in counts.items()},
        title=title or f"Element frequency in the {len(distinct_recipes(table))} distinct recipes",
        colorbar_title="distinct recipes",
        highlight=new,
        highlight_label="absent from every seed",
        value_format=".0f",
        allowed=allowed,
        **layout,
    )


PROJECTED_SEEDS = (
    "Each seed is first moved onto the constraints (fixed amounts set, disallowed elements removed,<br>at most "
    "max_elements kept, none below the floor) and scored as that recipe: both axes are recipes that obey them."
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
            text=table["formula"] + "<br>from " + table["seed"].astype(str) + "<br>seed "
            + _value_text(table, f"{column} seed", unit) + " -> " + _value_text(table, column, unit),
            hovertemplate="%{text}<extra></extra>",
        )
    )  # fmt: skip
    label = f"{column} ({unit})" if unit else column
    figure.update_layout(title=f"{column}: seed -> designed<br><sup>{PROJECTED_SEEDS}</sup>",
                         xaxis_title=f"seed {label}, projected onto the constraints",
                         yaxis_title=f"designed {label}", height=460, margin={"t": 100})  # fmt: skip
    figure.update_layout(**layout)
    return figure


def _value_text(table: pd.DataFrame, name: str, unit: str) -> pd.Series:
    """``"212.4 ± 8.1 GPa"`` per row: the value column ``<name> [<unit>]`` and, where the table has it, the ensemble's
    spread (``<column>_std [<unit>]``, ``<column> seed_std [<unit>]``); the value alone for a single model."""
    column = with_unit(name, unit)
    spread_name = std_column(column)  # "<column>_std [unit]" or "<column> seed_std [unit]"
    values = table[column].map(lambda v: f"{v:.4g}")
    if spread_name in table.columns:
        values = values + table[spread_name].map(lambda v: f" ± {v:.2g}")
    return values + (f" {unit}" if unit else "")


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
    """The objective and each of its terms (each target's, and the uncertainty, diversity, distance or autoencoder
    terms a run has) vs optimisation step: mean over the recipes with a min-max band, one panel per term. All are
    in the units of the design table's objective (normalised: 1 = one training standard deviation of a target);
    the objective is the sum of the terms; the last point (marked) is the reported recipes as the table scores
    them. ``layout``: passed to ``figure.update_layout``."""
    if not trajectory:
        raise ValueError("no trajectory recorded (set record_trajectory: true)")
    steps = [record["step"][0] for record in trajectory]
    keys = [k for k in trajectory[0] if k != "step"]
    titles = [f"{k} (the sum of the terms below)" if k == "objective" and len(keys) > 2 else k for k in keys]
    figure = make_subplots(rows=len(keys), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.06)
    for i, key in enumerate(keys, start=1):
        rows = len(trajectory[0][key])  # a term a point lacks (the latent's alignment at the recipes) is not drawn
        values = np.array([record.get(key, [np.nan] * rows) for record in trajectory], dtype=float)
        mean = np.array([row.mean() if np.isfinite(row).all() else np.nan for row in values])
        figure.add_trace(go.Scatter(x=steps + steps[::-1], y=list(values.max(1)) + list(values.min(1))[::-1],
                                    fill="toself", line={"width": 0}, opacity=0.2, showlegend=False,
                                    hoverinfo="skip"), row=i, col=1)  # fmt: skip
        figure.add_trace(go.Scatter(x=steps, y=mean, name=key, mode="lines"), row=i, col=1)
        last = go.Scatter(x=steps[-1:], y=mean[-1:], mode="markers", name="reported recipes",
                          marker={"size": 8, "symbol": "diamond"},
                          hovertemplate="reported recipes: %{y:.4g}<extra></extra>")  # fmt: skip
        figure.add_trace(last, row=i, col=1)
    figure.update_layout(title="Objective and its terms vs step (lower is better; the table's objective units: "
                         "1 = one training standard deviation of a target)",
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
