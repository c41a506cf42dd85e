"""Write a design run to a folder: recipes.csv, results.json, SUMMARY.md and interactive figures (each file
atomically: a killed or failing write leaves the previous file, never half of one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.columns import seed_column, with_unit
from fm_engine.elements import element_symbols
from fm_engine.inverse.design import SAME_RECIPE, DesignResult, target_columns
from fm_engine.plots import pareto_front, recipe_heatmap, seed_vs_optimized, trajectory_figure
from fm_engine.plots.files import write_figure_html
from fm_engine.safe_io import atomic_write_text
from fm_engine.tasks import TaskType


def seed_elements(result: DesignResult) -> list[str]:
    if result.seeds is None:
        return []
    symbols = element_symbols()
    return sorted({symbols[i] for i in np.flatnonzero((result.seeds > 0).any(axis=0))})


def design_figures(result: DesignResult, checkpoint: LoadedCheckpoint) -> dict[str, go.Figure]:
    """The standard figures of a run, by file stem."""
    table = result.table
    allowed = result.config.constraints.allowed()
    figures = {"element_heatmap": recipe_heatmap(table, seed_elements(result), allowed=allowed)}
    value_columns = [name for name in result.units if with_unit(name, result.units[name]) in table.columns]
    for target in result.config.targets:
        task = checkpoint.model.tasks[target.task]
        names = target_columns(checkpoint.model, target)
        goals: list[float | list[float] | None] = [None] * len(names)
        if task.type is TaskType.REGRESSION and isinstance(target.value, float | int):
            goals = [target.value]
        elif target.range is not None:
            goals = [list(target.range)]
        elif target.points is not None:
            goals = [y for _, y in target.points]
        for name, goal in zip(names, goals, strict=True):
            if name not in value_columns or seed_column(with_unit(name, result.units[name])) not in table.columns:
                continue
            stem = "seed_vs_designed_" + "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
            figures[stem] = seed_vs_optimized(table, name, unit=result.units[name], target=goal)
    if len(value_columns) >= 2:
        x, y = (with_unit(n, result.units[n]) for n in value_columns[:2])
        figures["pareto"] = pareto_front(table, x, y, maximize=_maximize(result, checkpoint, value_columns[:2]))
    if result.trajectory:
        figures["trajectory"] = trajectory_figure(result.trajectory)
    return figures


def _maximize(result: DesignResult, checkpoint: LoadedCheckpoint, names: list[str]) -> tuple[bool, bool]:
    """Direction per plotted column: down for 'low' targets, up otherwise."""
    flags = []
    for name in names:
        target = next(t for t in result.config.targets if name in target_columns(checkpoint.model, t))
        flags.append(target.direction != "low")
    return flags[0], flags[1]


def summary_markdown(result: DesignResult, checkpoint: LoadedCheckpoint) -> str:
    config = result.config
    table = result.table
    model = checkpoint.model
    lines = ["# Design summary", ""]
    lines += [f"Checkpoint `{result.checkpoint_path}` (id {result.checkpoint_id[:12]}, weights sha256 "
              f"{result.weights_sha256[:12]}); method **{config.method}**, {config.steps} steps, lr {config.lr}, "
              f"random seed {config.random_seed}; {len(table)} recipes in {result.seconds:.2f} s.", ""]  # fmt: skip
    lines += ["## Targets", ""] + [f"- {t.describe(model)} (weight {t.weight:g})" for t in config.targets]
    c = config.constraints
    lines += ["", "## Constraints", ""]
    allowed = c.allowed_elements if isinstance(c.allowed_elements, str) else ", ".join(c.allowed())
    lines += [f"- allowed elements: {allowed}", f"- max elements: {c.max_elements or 'no cap'}",
              f"- fixed amounts: {c.fixed_amounts or 'none'}", f"- min nonzero fraction: {c.min_nonzero_weight}",
              f"- element step scale: {c.element_step_scale}", f"- seed blend: {c.seed_blend}",
              f"- diversity scale: {c.diversity_scale}"]  # fmt: skip
    if c.max_distance is not None:
        lines.append(f"- max distance to the training compositions: {c.max_distance:g} (verified on every recipe)")
    if config.uncertainty_scale > 0:
        lines += ["", f"Uncertainty scale {config.uncertainty_scale:g}: each target's term includes "
                  f"{config.uncertainty_scale:g} x the ensemble's calibrated spread (a confidence bound)."]  # fmt: skip
    ok = int(table["constraints_ok"].sum())
    lines += ["", f"**Hard constraints verified on the final recipes: {ok}/{len(table)} satisfy all.**", ""]
    if "extrapolated_for" in table.columns:
        n_far = int((table["extrapolated_for"] != "").sum())
        lines += [f"**Extrapolation: {n_far}/{len(table)} recipes lie as far from a target task's training "
                  "compositions as its furthest test composition, or further (column `extrapolated_for`); the test "
                  "errors do not cover their predicted values.**", ""]  # fmt: skip
    value_columns = [with_unit(n, u) for n, u in result.units.items() if with_unit(n, u) in table.columns]
    head = ["rank", "formula", *value_columns, "objective", "distance_to_training"]
    n_unique = int((table["duplicate_of_rank"] == 0).sum())
    lines += [
        "## Best recipes",
        "",
        result.shortfall or f"{n_unique} distinct recipes, as asked ({SAME_RECIPE}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for _, row in table[table["duplicate_of_rank"] == 0].head(10).iterrows():
        cells = [str(row["rank"]), row["formula"]] + [f"{row[col]:.4g}" for col in head[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    new = sorted(set(recipe_elements(table)) - set(seed_elements(result))) if result.seeds is not None else []
    lines += [
        "",
        "Values are re-scored by a forward pass on each reported recipe, in physical units. "
        "`objective` is the weighted sum of target terms (lower is better; normalised units). "
        "`distance_to_training` is the fraction of atoms that differ from the nearest training composition.",
        "",
    ]
    if checkpoint.is_ensemble:
        lines += [f"Values are the mean of the ensemble's {len(checkpoint.members)} members; `<column>_std` columns "
                  "in recipes.csv hold their calibrated standard deviation, in the same unit.", ""]  # fmt: skip
    if result.seeds is not None:
        lines += [f"Elements in recipes but in no seed: {', '.join(new) if new else 'none'}.", ""]
    if "objective_latent" in table.columns:
        lines += [
            f"Latent path: mean objective at the latent {table['objective_latent'].mean():.3g}, "
            f"on the recovered recipes {table['objective'].mean():.3g} (recipes are ranked by the latter).",
            "",
        ]
    lines += ["Files: `recipes.csv`, `results.json` (full config, seeds, versions: `fm design --replay` "
              "reproduces the recipes), figures as interactive HTML in `figures/`.", ""]  # fmt: skip
    return "\n".join(lines)


def recipe_elements(table: pd.DataFrame) -> list[str]:
    return [c[2:] for c in table.columns if c.startswith("x_") and (table[c] > 0).any()]


def write_design(result: DesignResult, checkpoint: LoadedCheckpoint, out: str | Path) -> Path:
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "recipes.csv", result.to_csv())
    atomic_write_text(out / "results.json", result.to_json())
    atomic_write_text(out / "SUMMARY.md", summary_markdown(result, checkpoint))
    for stem, figure in design_figures(result, checkpoint).items():
        write_figure_html(figure, out / "figures" / f"{stem}.html")  # plotly.min.js once beside: offline
    return out
