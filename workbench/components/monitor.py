"""Figures and text for a training run's live monitor, from its run files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fm_engine.cards import METRIC_LABELS, ModelCard


def epoch_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "epoch"]


def loss_figure(records: Sequence[dict[str, Any]], tasks: Sequence[str]) -> go.Figure:
    """Per-task train (solid) and validation (dashed) loss vs epoch, normalised units."""
    epochs = epoch_records(records)
    figure = go.Figure()
    for task in ["loss", *tasks]:
        train_key = f"train/{task}" if task != "loss" else "train/loss"
        val_key = f"val/{task}/loss" if task != "loss" else "val/loss"
        x = [r["epoch"] + 1 for r in epochs if r.get(train_key) is not None]
        figure.add_trace(go.Scatter(x=x, y=[r[train_key] for r in epochs if r.get(train_key) is not None],
                                    name=f"{task} train", mode="lines", legendgroup=task))  # fmt: skip
        xv = [r["epoch"] + 1 for r in epochs if r.get(val_key) is not None]
        yv = [r[val_key] for r in epochs if r.get(val_key) is not None]
        figure.add_trace(go.Scatter(x=xv, y=yv, name=f"{task} val", mode="lines", line={"dash": "dash"},
                                    legendgroup=task))  # fmt: skip
    figure.update_layout(title="Loss per task (normalised units; total = weighted sum)", xaxis_title="epoch",
                         yaxis_title="loss", yaxis_type="log", height=380)  # fmt: skip
    return figure


def metric_figure(records: Sequence[dict[str, Any]], tasks: dict[str, tuple[str, str]]) -> go.Figure:
    """One panel per task with its main validation metric in physical units.

    ``tasks``: name -> (metric key, axis label with unit), e.g. ``{"bulk_modulus": ("mae", "MAE (GPa)")}``.
    """
    epochs = epoch_records(records)
    names = list(tasks)
    figure = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=names)
    for j, name in enumerate(names, start=1):
        key, label = tasks[name]
        values = [(r["epoch"] + 1, r.get(f"val/{name}/{key}")) for r in epochs]
        values = [(e, v) for e, v in values if v is not None]
        figure.add_trace(go.Scatter(x=[e for e, _ in values], y=[v for _, v in values], mode="lines+markers",
                                    showlegend=False), row=1, col=j)  # fmt: skip
        figure.update_yaxes(title_text=label, row=1, col=j)
        figure.update_xaxes(title_text="epoch", row=1, col=j)
    figure.update_layout(title="Validation metrics (physical units)", height=320)
    return figure


def eta_text(status: dict[str, Any]) -> str:
    """``epoch 12 / 60, ETA 0:41`` (the ETA is an upper bound: early stopping may end sooner)."""
    epoch = status.get("epoch", 0)
    total = status.get("max_epochs") or "?"
    eta = status.get("eta_seconds")
    shown = f", at most {int(eta) // 60}:{int(eta) % 60:02d} left" if isinstance(eta, int | float) and eta else ""
    return f"epoch {epoch} / {total}{shown}"


def task_metrics(model_config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Main validation metric per task from a run's ``model_config.json``: MAE / accuracy / curve RMSE."""
    chosen = {}
    for task in model_config.get("tasks", []):
        unit = f" ({task['unit']})" if task.get("unit") else ""
        if task["type"] == "classification":
            chosen[task["name"]] = ("accuracy", "accuracy")
        elif task["type"] == "kernel_regression":
            chosen[task["name"]] = ("rmse", f"curve RMSE{unit}")
        else:
            chosen[task["name"]] = ("mae", f"MAE{unit}")
    return chosen


def rehearsal_headline(status: dict[str, Any]) -> str:
    """``step 2 / 3: learning hea_phase`` for a rehearsal's status.json."""
    step = int(status.get("step") or 0)
    total = status.get("n_steps") or len(status.get("steps") or []) or "?"
    if step < 1:
        return f"step 0 / {total}: preparing"
    steps = status.get("steps") or []
    task = next((s.get("task") for s in steps if s.get("step") == step), None) or "?"
    return f"step {step} / {total}: learning {task}"


def rehearsal_step_lines(status: dict[str, Any], icons: dict[str, str]) -> list[str]:
    """One markdown line per step: its state icon, the task it adds, and its state."""
    lines = []
    for entry in status.get("steps") or []:
        state = str(entry.get("state", "queued"))
        learned = "learned first" if entry.get("step") == 1 else "added, earlier tasks replayed"
        lines.append(f"- {icons.get(state, '')} step {entry.get('step')}: **{entry.get('task')}** ({learned}): {state}")
    return lines


def finetune_comparison(card: ModelCard | None) -> list[dict[str, Any]]:
    """Rows (task, metric with unit, test before, test after, retrained) from a fine-tuned card's section."""
    tuned = card.finetune if card is not None else None
    if tuned is None:
        return []
    rows = []
    for task, after in tuned.test_metrics_after.items():
        before = tuned.test_metrics_before.get(task, {})
        entry = card.task(task)
        for key, value in after.items():
            if key == "n":
                continue
            unit = f" ({entry.unit})" if key in ("mae", "rmse") and entry is not None and entry.unit else ""
            rows.append({"task": task, "test metric": f"{METRIC_LABELS.get(key, key)}{unit}", "before": before.get(key),
                         "after": value, "retrained": task in tuned.trained_heads})  # fmt: skip
    return rows
