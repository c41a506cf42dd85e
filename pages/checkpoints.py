"""Checkpoints: the workspace's trained models with their model cards; compare two; delete one.

The page logic lives in pure functions (card tables, comparison, safe deletion) so tests can call them
directly; the Streamlit UI runs only when Streamlit executes this file as a page.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fm_engine.training.metrics import METRIC_LABELS, format_interval, format_metric
from fm_engine.workspace import runs_dir
from workbench.components.cards import read_card

PENDING_DELETE = "fm_checkpoints_pending_delete"  # str path of the run awaiting confirmation
DELETED_MESSAGE = "fm_checkpoints_deleted"  # message shown after the rerun that follows a deletion
LOWER_IS_BETTER = {"mae", "rmse"}
HIGHER_IS_BETTER = {"r2", "accuracy", "macro_f1", "roc_auc"}


# ----------------------------------------------------------------------------------------------- pure logic
def read_card_md(run: Path) -> str:
    path = Path(run) / "checkpoint" / "card.md"
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError):
        return ""


def task_unit(entry: dict[str, Any]) -> str:
    """The unit shown for a task: its unit, or its class names for a classification task."""
    if entry.get("unit"):
        return str(entry["unit"])
    if entry.get("classes"):
        return "classes: " + ", ".join(map(str, entry["classes"]))
    return ""


def format_metrics(
    metrics: dict[str, Any] | None, unit: str = "", intervals: dict[str, list[float]] | None = None
) -> str:
    """``MAE 9.967 [9.13, 10.9] GPa, ...``: each metric with, when the card has them, its 95 % bootstrap
    interval, and its unit."""
    if not metrics:
        return ""
    intervals = intervals or {}
    parts = []
    for name, value in metrics.items():
        if name == "n" or value is None:
            continue
        text = f"{METRIC_LABELS.get(name, name)} {format_metric(value, intervals.get(name))}"
        if name in LOWER_IS_BETTER and unit and not unit.startswith("classes"):
            text += f" {unit}"
        parts.append(text)
    return ", ".join(parts)


def overview_table(runs: dict[str, Path]) -> pd.DataFrame:
    """One row per checkpoint: name, tasks, created, split sizes, training time, fm_engine version."""
    rows = []
    for name, path in runs.items():
        card, problem = read_card(path)
        split = card.get("split") or {}
        training = card.get("training") or {}
        rows.append(
            {
                "checkpoint": name,
                "tasks": ", ".join(t.get("name", "?") for t in card.get("tasks", [])),
                "created": str(card.get("created", ""))[:19].replace("T", " "),
                "train / val / test": "/".join(str(split.get(k, "-")) for k in ("train", "val", "test")),
                "epochs": training.get("epochs_run"),
                "wall time (s)": training.get("wall_time_s"),
                "parameters": card.get("n_parameters"),
                "fm_engine": (card.get("versions") or {}).get("fm_engine", ""),
                "problem": problem,
            }
        )
    return pd.DataFrame(rows)


def tasks_table(card: dict[str, Any]) -> pd.DataFrame:
    """Per task: type, unit (or classes), t unit, split sizes, bad rows skipped, how far the test set reaches
    from the training data (max distance, fraction of atoms that differ), test metrics."""
    rows = []
    for entry in card.get("tasks", []):
        sizes = entry.get("compositions") or {}
        test = entry.get("test_metrics") or {}
        unit = task_unit(entry)
        reach = entry.get("test_distance_to_training") or {}
        rows.append(
            {
                "task": entry.get("name", "?"),
                "type": entry.get("type", ""),
                "unit": unit,
                "t unit": entry.get("t_unit", "") or "",
                "train": sizes.get("train"),
                "val": sizes.get("val"),
                "test": sizes.get("test"),
                "bad rows skipped": entry.get("bad_rows_skipped", 0),
                "test reaches (distance)": reach.get("max"),
                "test n": int(test["n"]) if test.get("n") is not None else None,
                "test metrics [95 % CI]": format_metrics(test, unit, entry.get("test_metrics_ci95")),
            }
        )
    return pd.DataFrame(rows)


def sources_table(card: dict[str, Any]) -> pd.DataFrame:
    """Per task: dataset, files, licence (whatever the card records) and the training compositions."""
    sizes = {t.get("name"): (t.get("compositions") or {}) for t in card.get("tasks", [])}
    rows = []
    for task, source in (card.get("data_sources") or {}).items():
        source = source if isinstance(source, dict) else {"dataset": str(source)}
        row = {"task": task}
        row |= {key: (", ".join(map(str, v)) if isinstance(v, list) else v) for key, v in source.items()}
        row["compositions (train/val/test)"] = "/".join(
            str(sizes.get(task, {}).get(k, "-")) for k in ("train", "val", "test")
        )
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_long(card: dict[str, Any]) -> pd.DataFrame:
    """Long table of test metrics: task, unit, metric, value (``n`` kept as its own metric) and the 95 %
    bootstrap interval ``low`` / ``high`` (NaN when the card has none)."""
    rows = []
    for entry in card.get("tasks", []):
        unit = task_unit(entry)
        intervals = entry.get("test_metrics_ci95") or {}
        for metric, value in (entry.get("test_metrics") or {}).items():
            metric_unit = unit if metric in LOWER_IS_BETTER and not unit.startswith("classes") else ""
            low, high = intervals.get(metric, (np.nan, np.nan))
            rows.append(
                {
                    "task": entry.get("name", "?"),
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


def compare_cards(card_a: dict[str, Any], card_b: dict[str, Any], label_a: str, label_b: str) -> pd.DataFrame:
    """Per task and test metric, side by side (with the unit and each card's 95 % interval) and which
    checkpoint is better (or ``similar``, see :func:`_verdict`)."""
    if label_a == label_b:
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    merged = metrics_long(card_a).merge(
        metrics_long(card_b), on=["task", "metric", "key"], how="outer", suffixes=("_a", "_b")
    )
    side_a = merged[["value_a", "low_a", "high_a"]].rename(columns=lambda column: column[:-2])
    side_b = merged[["value_b", "low_b", "high_b"]].rename(columns=lambda column: column[:-2])
    table = pd.DataFrame(
        {
            "task": merged["task"],
            "metric": merged["metric"],
            "unit": merged["unit_a"].fillna(merged["unit_b"]).fillna(""),
            label_a: side_a["value"],
            f"{label_a} 95 % CI": side_a.apply(_interval_text, axis=1),
            label_b: side_b["value"],
            f"{label_b} 95 % CI": side_b.apply(_interval_text, axis=1),
            "better": [
                _verdict(side_a.loc[i], side_b.loc[i], merged.at[i, "key"], label_a, label_b) for i in merged.index
            ],
        }
    )
    order = {name: i for i, name in enumerate([t.get("name") for t in card_a.get("tasks", [])])}
    table["_order"] = table["task"].map(order).fillna(len(order))
    return table.sort_values(["_order", "task"], kind="stable").drop(columns="_order").reset_index(drop=True)


def compare_summary(card_a: dict[str, Any], card_b: dict[str, Any], label_a: str, label_b: str) -> pd.DataFrame:
    """Training set-up side by side: split sizes, epochs, wall time, parameters, encoder, versions."""

    def facts(card: dict[str, Any]) -> dict[str, str]:
        split = card.get("split") or {}
        training = card.get("training") or {}
        encoder = card.get("encoder") or {}
        hidden = encoder.get("hidden_dims") if encoder.get("type") == "mlp" else encoder.get("d_model")
        return {
            "tasks": ", ".join(t.get("name", "?") for t in card.get("tasks", [])),
            "compositions (train/val/test)": "/".join(str(split.get(k, "-")) for k in ("train", "val", "test")),
            "encoder": f"{encoder.get('type', '?')} {hidden}" if encoder else "",
            "parameters": str(card.get("n_parameters", "")),
            "epochs run (best)": f"{training.get('epochs_run', '?')} ({training.get('best_epoch', '?')})",
            "wall time (s)": str(training.get("wall_time_s", "")),
            "created": str(card.get("created", "")),
            "fm_engine": (card.get("versions") or {}).get("fm_engine", ""),
        }

    if label_a == label_b:
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    fa, fb = facts(card_a), facts(card_b)
    return pd.DataFrame({"": list(fa), label_a: list(fa.values()), label_b: list(fb.values())})


def delete_run(run: Path, *, root: Path | None = None) -> None:
    """Delete a run folder of the workspace; refuses folders outside it and runs still training."""
    from workbench.runs import run_info

    root = (root or runs_dir()).resolve()
    path = Path(run).resolve()
    if path.parent != root or not path.is_dir():
        raise ValueError(f"{run}: not a run folder of this workspace ({root})")
    if (path / "status.json").exists() and run_info(path).state in ("queued", "running"):
        raise ValueError(f"{path.name} is still training: cancel it on the Train page first")
    shutil.rmtree(path)


# --------------------------------------------------------------------------------------------------- the UI
def _card_view(name: str, path: Path) -> None:
    import streamlit as st

    from workbench.resources import CheckpointError, get_checkpoint

    try:
        checkpoint = get_checkpoint(path)
    except CheckpointError as error:
        st.error(f"Checkpoint '{name}' cannot be loaded: {error}")
        st.caption("Delete it below, or train it again on the Train page.")
        return
    card = checkpoint.card
    if not card:
        st.warning("This checkpoint loads, but it has no model card.")
        return
    st.markdown(f"#### Model card: {card.get('name') or name}")
    split = card.get("split") or {}
    training = card.get("training") or {}
    cols = st.columns(4)
    cols[0].metric("Tasks", len(card.get("tasks", [])))
    cols[1].metric("Compositions", f"{sum(int(v) for v in split.values()):,}" if split else "-")
    cols[2].metric("Training time", f"{training.get('wall_time_s', 0):.1f} s")
    cols[3].metric("Parameters", f"{card.get('n_parameters', 0):,}")
    st.caption(
        f"Created {card.get('created', '?')}; split seed {card.get('split_seed', '?')}; training seed "
        f"{card.get('seed', card.get('split_seed', '?'))}; checkpoint id "
        f"`{checkpoint.checkpoint_id}`; weights SHA-256 `{checkpoint.weights_sha256[:16]}...`"
    )
    st.markdown(
        "**Tasks, units and test metrics** (MAE / RMSE in the task's unit; sequence tasks pool curve points; "
        "[low, high]: 95 % bootstrap interval over the test compositions)"
    )
    st.dataframe(tasks_table(card), hide_index=True, key=f"card_tasks_{name}")
    sources = sources_table(card)
    if len(sources):
        st.markdown("**Data sources**")
        st.dataframe(sources, hide_index=True, key=f"card_sources_{name}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Training**")
        st.dataframe(
            pd.DataFrame({"": list(training), "value": [str(v) for v in training.values()]}),
            hide_index=True,
            key=f"card_training_{name}",
        )
    with right:
        st.markdown("**Versions**")
        versions = card.get("versions") or {}
        st.dataframe(
            pd.DataFrame({"package": list(versions), "version": list(versions.values())}),
            hide_index=True,
            key=f"card_versions_{name}",
        )
    markdown = read_card_md(path)
    if markdown:
        with st.expander("card.md (as written next to the weights)"):
            st.markdown(markdown)
        st.download_button(
            "Download card.md",
            data=markdown.encode("utf-8"),
            file_name=f"{name}_card.md",
            mime="text/markdown",
            key=f"download_card_{name}",
            on_click="ignore",
        )


def _compare(checkpoints: dict[str, Path]) -> None:
    import streamlit as st

    st.subheader("Compare two checkpoints")
    names = list(checkpoints)
    if len(names) < 2:
        st.caption("Train a second model to compare checkpoints side by side.")
        return
    left, right = st.columns(2)
    name_a = left.selectbox("Checkpoint A", names, index=0, key="compare_a")
    name_b = right.selectbox("Checkpoint B", names, index=1, key="compare_b")
    card_a, problem_a = read_card(checkpoints[name_a])
    card_b, problem_b = read_card(checkpoints[name_b])
    for name, problem in ((name_a, problem_a), (name_b, problem_b)):
        if problem:
            st.error(f"{name}: {problem}")
    if problem_a or problem_b:
        return
    st.markdown(
        "**Test metrics per task** (better: lower MAE / RMSE, higher R2, accuracy, macro-F1, ROC-AUC; "
        "similar: each value lies inside the other's 95 % interval)"
    )
    st.dataframe(compare_cards(card_a, card_b, name_a, name_b), hide_index=True, key="compare_metrics")
    st.markdown("**Set-up**")
    st.dataframe(compare_summary(card_a, card_b, name_a, name_b), hide_index=True, key="compare_setup")


def _delete(checkpoints: dict[str, Path]) -> None:
    import streamlit as st

    from workbench import state

    st.subheader("Delete a checkpoint")
    name = st.selectbox("Run to delete", list(checkpoints), key="delete_choice")
    path = checkpoints[name]
    pending = state.get(PENDING_DELETE)
    if pending != str(path):
        if st.button(f"Delete '{name}' ...", key="delete_start"):
            state.put(PENDING_DELETE, str(path))
            st.rerun()
        return
    st.warning(f"Delete the run folder `{path}` (weights, model card, metrics, logs)? This cannot be undone.")
    yes, no, _ = st.columns([1, 1, 3])
    if yes.button(f"Yes, delete '{name}'", type="primary", key="delete_confirm"):
        state.put(PENDING_DELETE, None)
        try:
            delete_run(path)
        except (ValueError, OSError) as error:
            st.error(f"Cannot delete '{name}': {error}")
            return
        if state.active_checkpoint() == path:
            state.put(state.ACTIVE_CHECKPOINT, None)
        state.put(DELETED_MESSAGE, f"Deleted '{name}'.")
        st.rerun()
    if no.button("Cancel", key="delete_cancel"):
        state.put(PENDING_DELETE, None)
        st.rerun()


def main() -> None:
    import streamlit as st

    from workbench import state
    from workbench.paths import page
    from workbench.resources import available_checkpoints

    st.title("Checkpoints")
    message = state.get(DELETED_MESSAGE)
    if message:
        st.success(message)
        state.put(DELETED_MESSAGE, None)
    checkpoints = available_checkpoints()
    if not checkpoints:
        st.info("No checkpoint in this workspace yet. Train the demo model on the Overview page, or your own on Train.")
        st.page_link(page("overview.py"), label="Overview: train the demo model", icon=":material/home:")
        return
    st.caption(f"{len(checkpoints)} checkpoint(s) in `{runs_dir()}`, newest first.")
    st.dataframe(overview_table(checkpoints), hide_index=True, key="checkpoint_overview")
    names = list(checkpoints)
    active = state.active_checkpoint()
    index = next((i for i, n in enumerate(names) if checkpoints[n] == active), 0)
    name = st.selectbox("Model card of", names, index=index, key="card_choice")
    _card_view(name, checkpoints[name])
    st.divider()
    _compare(checkpoints)
    st.divider()
    _delete(checkpoints)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the functions above
    main()
