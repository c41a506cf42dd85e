"""Model cards of workspace runs (and of the installed foundation), read for display: the Checkpoints page's
tables and the comparison of two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fm_engine.calibration import EXPECTED_LEVELS, UNCALIBRATED_NOTE
from fm_engine.cards import (
    CARD_FILE,
    CARD_MARKDOWN_FILE,
    METRIC_LABELS,
    CheckpointError,
    ModelCard,
    TaskCard,
    format_interval,
)
from fm_engine.cards import (
    read_card as read_checkpoint_card,
)
from fm_engine.plots import calibration_figure

LOWER_IS_BETTER = {"mae", "rmse"}
HIGHER_IS_BETTER = {"r2", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc"}
SPLITS = ("train", "val", "test")
HOW_TO_READ = {
    "metrics": "**How to read this:** errors measured on test compositions the model never saw during training: "
    "MAE / RMSE in the task's unit (lower is better), R2, accuracy, ROC-AUC (higher is better); [low, high] is the "
    "95 % bootstrap interval, so two models whose intervals overlap may not really differ.",
    "tasks": "**How to read this:** how much data each task had (compositions per split) and how far its test "
    "compositions lie from the training data (0 = seen, 1 = no element in common): predictions further out than "
    "that are extrapolations the test metrics do not cover.",
    "compare": "**How to read this:** `better` names the checkpoint with the better test value of each metric; "
    "*similar* means each value lies inside the other's 95 % interval, i.e. the difference is within the noise "
    "of the test set. Compare like with like: the same tasks on the same test compositions.",
    "calibration_table": "**How to read this:** after calibration, about 68 % of the test truths should lie within "
    "± 1 std and 95 % within ± 2 std; values well below mean the error bars are too narrow, well above too wide.",
    "calibration_plot": "**How to read this:** each line is the share of test truths inside the error bar at each "
    "nominal level; on the diagonal the error bars mean what they say, below it they are too narrow (over-"
    "confident), above it too wide (the grey dashed diagonal). Dotted: the members' raw spread before calibration.",
}
"""The "how to read this" line under each result of the Checkpoints page (markdown)."""


def checkpoint_folder(path: Path) -> Path:
    """The checkpoint folder of a run folder (its ``checkpoint/``), or ``path`` itself when it is a checkpoint
    folder (the foundation's)."""
    path = Path(path)
    return path / "checkpoint" if (path / "checkpoint").is_dir() else path


def read_card(run: Path) -> tuple[ModelCard | None, str]:
    """The model card of a run's (or a checkpoint folder's) checkpoint, or (None, reason) when it is missing,
    unreadable or broken."""
    try:
        card = read_checkpoint_card(checkpoint_folder(run))
    except CheckpointError as error:
        return None, str(error).removeprefix(f"{CARD_FILE}: ")
    if card is None:
        return None, f"no model card ({CARD_FILE}) in this checkpoint"
    return card, ""


def read_card_md(run: Path) -> str:
    """The ``card.md`` written next to a run's (or a checkpoint folder's) weights, or '' when missing or
    unreadable."""
    path = checkpoint_folder(run) / CARD_MARKDOWN_FILE
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError):
        return ""


def task_unit(task: TaskCard) -> str:
    """The unit shown for a task: its unit, or its class names for a classification task."""
    if task.unit:
        return task.unit
    if task.classes:
        return "classes: " + ", ".join(task.classes)
    return ""


def split_text(sizes: dict[str, int]) -> str:
    """``380/48/48``: compositions per split (train / val / test), ``-`` where unknown."""
    return "/".join(str(sizes.get(k, "-")) for k in SPLITS)


def overview_table(runs: dict[str, Path]) -> pd.DataFrame:
    """One row per checkpoint: name, tasks, created, split sizes, training time, fm_engine version."""
    rows = []
    for name, path in runs.items():
        card, problem = read_card(path)
        card = card or ModelCard()
        rows.append(
            {
                "checkpoint": name,
                "tasks": ", ".join(card.task_names),
                "created": card.created[:19].replace("T", " "),
                "train / val / test": split_text(card.split),
                "epochs": card.training.epochs_run,
                "wall time (s)": card.training.wall_time_s,
                "parameters": card.n_parameters,
                "fm_engine": card.versions.get("fm_engine", ""),
                "problem": problem,
            }
        )
    return pd.DataFrame(rows)


def tasks_table(card: ModelCard) -> pd.DataFrame:
    """Per task: type, unit (or classes), t unit, split sizes, bad rows skipped, how far the test set reaches
    from the training data (max distance, fraction of atoms that differ); the test metrics: :func:`metrics_table`."""
    rows = []
    for task in card.tasks:
        sizes, unit = task.compositions, task_unit(task)
        rows.append(
            {
                "task": task.name,
                "type": task.type,
                "unit": unit,
                "t unit": task.t_unit,
                "train": sizes.get("train"),
                "val": sizes.get("val"),
                "test": sizes.get("test"),
                "bad rows skipped": task.bad_rows_skipped,
                "test reaches (distance)": (task.test_distance_to_training or {}).get("max"),
            }
        )
    return pd.DataFrame(rows)


def metrics_table(card: ModelCard) -> pd.DataFrame:
    """One row per task and test metric: its value, 95 % bootstrap interval and unit (the number of test
    compositions is the metric ``test n``): five narrow columns, read without scrolling right."""
    long = metrics_long(card)
    return pd.DataFrame({
        "task": long["task"], "metric": long["metric"], "value": long["value"],
        "95 % CI": long.apply(_interval_text, axis=1), "unit": long["unit"],
    })  # fmt: skip


def sources_table(card: ModelCard) -> pd.DataFrame:
    """Per task: dataset, files, licence (whatever the card records) and the training compositions."""
    rows = []
    for name, source in card.data_sources.items():
        row = {"task": name}
        row |= {key: (", ".join(map(str, v)) if isinstance(v, list) else v) for key, v in source.items()}
        task = card.task(name)
        row["compositions (train/val/test)"] = split_text(task.compositions if task else {})
        rows.append(row)
    return pd.DataFrame(rows)


def training_table(card: ModelCard) -> pd.DataFrame:
    """The card's training facts (epochs, best epoch, wall time, ...) as text."""
    training = card.training.to_mapping()
    return pd.DataFrame({"": list(training), "value": [str(v) for v in training.values()]})


def calibration_text(card: ModelCard) -> str:
    """What an ensemble card's calibration section shows ('' for a single model)."""
    if card.ensemble is None:
        return ""
    if not card.ensemble.calibration:
        return f"Not calibrated: {UNCALIBRATED_NOTE}."
    return (f"**Calibration of the spread** ({card.ensemble.members} members): every `_std` is sqrt((a × std)² + b²): "
            "the members' standard deviation times the task's factor a, with a floor b in the task's unit (a spread "
            "no prediction goes below), both fitted on the validation split by maximum likelihood. On the test split "
            "a calibrated spread holds about 68 % of the truths within ± 1 std and 95 % within ± 2 std; a positive "
            "Spearman correlation means a larger spread points at a larger error. "
            "Classification tasks are not calibrated.")  # fmt: skip


def calibration_table(card: ModelCard) -> pd.DataFrame:
    """An ensemble's calibration per task: factor a, floor b (text with the task's unit), test shares inside +/- 1
    and 2 std before / after calibration (%), Spearman rank correlation of |error| and std (empty for a single model
    or an uncalibrated ensemble)."""
    record = card.ensemble.calibration if card.ensemble is not None else {}
    units = {task.name: task.unit for task in card.tasks}

    def share(value: float) -> float:
        return round(100 * value, 1) if np.isfinite(value) else float("nan")

    rows = []
    for task, c in record.items():
        rows.append({"task": task, "factor": float(f"{c.factor:.3g}"),
                     "floor": f"{c.floor:.3g} {units.get(task, '')}".rstrip(), "val n": c.n_val, "test n": c.n_test,
                     "±1 std before (%)": share(c.coverage_1_before), "±1 std after (%)": share(c.coverage_1_after),
                     "±2 std before (%)": share(c.coverage_2_before), "±2 std after (%)": share(c.coverage_2_after),
                     "Spearman(|error|, std)": round(c.spearman, 3) if np.isfinite(c.spearman) else None})  # fmt: skip
    return pd.DataFrame(rows)


def calibration_plot(card: ModelCard) -> go.Figure | None:
    """The calibration plot of an ensemble's card (expected vs observed coverage on the test split, calibrated and
    raw std per task); None without the figures."""
    record = card.ensemble.calibration if card.ensemble is not None else {}
    measured = {task: c for task, c in record.items() if len(c.observed_after) == len(EXPECTED_LEVELS)}
    if not measured:
        return None
    return calibration_figure(expected=EXPECTED_LEVELS, after={t: c.observed_after for t, c in measured.items()},
                              before={t: c.observed_before for t, c in measured.items()})  # fmt: skip


def versions_table(card: ModelCard) -> pd.DataFrame:
    return pd.DataFrame({"package": list(card.versions), "version": list(card.versions.values())})


def metrics_long(card: ModelCard) -> pd.DataFrame:
    """Long table of test metrics: task, unit, metric, value (``n`` kept as its own metric) and the 95 %
    bootstrap interval ``low`` / ``high`` (NaN when the card has none)."""
    rows = []
    for task in card.tasks:
        unit = task_unit(task)
        for metric, value in task.test_metrics.items():
            metric_unit = unit if metric in LOWER_IS_BETTER and not unit.startswith("classes") else ""
            low, high = task.test_metrics_ci95.get(metric, (np.nan, np.nan))
            rows.append(
                {
                    "task": task.name,
                    "metric": "test n" if metric == "n" else METRIC_LABELS.get(metric, metric),
                    "key": metric,
                    "unit": metric_unit,
                    "value": value,
                    "low": low,
                    "high": high,
                }
            )
    return pd.DataFrame(rows, columns=["task", "metric", "key", "unit", "value", "low", "high"])


def _verdict(a: pd.Series, b: pd.Series, key: str, label_a: str, label_b: str) -> str:
    """Which checkpoint is better on one metric; ``similar`` when each value lies inside the other's 95 %
    interval (a conservative reading: their difference is within the noise of the test sets)."""
    if pd.isna(a["value"]) or pd.isna(b["value"]) or np.isclose(a["value"], b["value"]) or key == "n":
        return ""
    if a["low"] <= b["value"] <= a["high"] and b["low"] <= a["value"] <= b["high"]:  # False for NaN bounds
        return "similar"
    if key in LOWER_IS_BETTER:
        return label_a if a["value"] < b["value"] else label_b
    if key in HIGHER_IS_BETTER:
        return label_a if a["value"] > b["value"] else label_b
    return ""


def _interval_text(row: pd.Series) -> str:
    return "" if pd.isna(row["low"]) else format_interval((row["low"], row["high"]))


def _labels(label_a: str, label_b: str) -> tuple[str, str]:
    return (f"{label_a} (A)", f"{label_b} (B)") if label_a == label_b else (label_a, label_b)


def compare_cards(card_a: ModelCard, card_b: ModelCard, label_a: str, label_b: str) -> pd.DataFrame:
    """Per task and test metric: which checkpoint is better (or ``similar``, see :func:`_verdict`), then both values
    side by side, the unit and each card's 95 % interval (the verdict and the values first, so they are read
    without scrolling right)."""
    label_a, label_b = _labels(label_a, label_b)
    merged = metrics_long(card_a).merge(
        metrics_long(card_b), on=["task", "metric", "key"], how="outer", suffixes=("_a", "_b")
    )
    side_a = merged[["value_a", "low_a", "high_a"]].rename(columns=lambda column: column[:-2])
    side_b = merged[["value_b", "low_b", "high_b"]].rename(columns=lambda column: column[:-2])
    table = pd.DataFrame(
        {
            "task": merged["task"],
            "metric": merged["metric"],
            "better": [
                _verdict(side_a.loc[i], side_b.loc[i], merged.at[i, "key"], label_a, label_b) for i in merged.index
            ],
            label_a: side_a["value"],
            label_b: side_b["value"],
            "unit": merged["unit_a"].fillna(merged["unit_b"]).fillna(""),
            f"{label_a} 95 % CI": side_a.apply(_interval_text, axis=1),
            f"{label_b} 95 % CI": side_b.apply(_interval_text, axis=1),
        }
    )
    order = {name: i for i, name in enumerate(card_a.task_names)}
    table["_order"] = table["task"].map(order).fillna(len(order))
    return table.sort_values(["_order", "task"], kind="stable").drop(columns="_order").reset_index(drop=True)


def compare_verdict(table: pd.DataFrame, label_a: str, label_b: str) -> str:
    """The comparison in one sentence (markdown) from :func:`compare_cards`' ``better`` column: how many metrics
    each checkpoint wins and how many are similar."""
    label_a, label_b = _labels(label_a, label_b)
    verdicts = table["better"].value_counts()
    won_a, won_b, similar = (int(verdicts.get(key, 0)) for key in (label_a, label_b, "similar"))
    compared = won_a + won_b + similar
    if not compared:
        return "**Verdict:** no test metric in common to compare."
    if won_a and not won_b:
        lead = f"**{label_a}** is better"
    elif won_b and not won_a:
        lead = f"**{label_b}** is better"
    elif won_a or won_b:
        lead = "Mixed"
    else:
        lead = "No clear difference"
    return (f"**Verdict:** {lead}: {label_a} better on {won_a}, {label_b} better on {won_b}, similar on {similar} "
            f"of {compared} test metrics.")  # fmt: skip


def _setup_facts(card: ModelCard) -> dict[str, str]:
    encoder, training = card.encoder, card.training
    hidden = encoder.get("hidden_dims") if encoder.get("type") == "mlp" else encoder.get("d_model")
    return {
        "tasks": ", ".join(card.task_names),
        "compositions (train/val/test)": split_text(card.split),
        "encoder": f"{encoder.get('type', '?')} {hidden}" if encoder else "",
        "parameters": str(card.n_parameters if card.n_parameters is not None else ""),
        "epochs run (best)": f"{_or_unknown(training.epochs_run)} ({_or_unknown(training.best_epoch)})",
        "wall time (s)": str(training.wall_time_s if training.wall_time_s is not None else ""),
        "created": card.created,
        "fm_engine": card.versions.get("fm_engine", ""),
    }


def _or_unknown(value: object) -> str:
    return "?" if value is None else str(value)


def compare_summary(card_a: ModelCard, card_b: ModelCard, label_a: str, label_b: str) -> pd.DataFrame:
    """Training set-up side by side: split sizes, epochs, wall time, parameters, encoder, versions."""
    label_a, label_b = _labels(label_a, label_b)
    fa, fb = _setup_facts(card_a), _setup_facts(card_b)
    return pd.DataFrame({"": list(fa), label_a: list(fa.values()), label_b: list(fb.values())})
