"""Text for a training run's live monitor, from its run files (its figures: :mod:`fm_engine.plots.training`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fm_engine.cards import METRIC_LABELS, ModelCard
from workbench.components.train_form import SCHEDULE_AUTO, SCHEDULE_HAND, SCHEDULE_KEYS, SCHEDULES


def duration_text(seconds: float) -> str:
    """A remaining time in words, rounded as a person would say it: ``about 40 s``, ``about 12 min``,
    ``about 2 h 18 min`` (never a clock-like ``137:46``)."""
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"about {max(round(seconds / 5) * 5, 5)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"


def eta_text(status: dict[str, Any]) -> str:
    """``epoch 12 / 60, at most about 2 h 18 min left`` (an upper bound: early stopping may end sooner)."""
    epoch = status.get("epoch", 0)
    total = status.get("max_epochs") or "?"
    eta = status.get("eta_seconds")
    shown = f", at most {duration_text(eta)} left" if isinstance(eta, int | float) and eta else ""
    return f"epoch {epoch} / {total}{shown}"


def ensemble_members(status: Mapping[str, Any]) -> int:
    """The number of members of an ensemble run (``ensemble: {members: N}``) from its status.json; 1 otherwise."""
    members = status.get("members")
    return members if isinstance(members, int) and members > 1 else 1


def ensemble_headline(status: Mapping[str, Any]) -> str:
    """``member 2 of 5`` while an ensemble run trains (its status' ``member``: the 0-based member in training;
    ``members 2, 3 of 5`` while several train side by side), ``5 members`` once it is final; "" for a single
    model."""
    members = ensemble_members(status)
    if members == 1:
        return ""
    if status.get("state") in ("done", "failed", "cancelled"):
        return f"{members} members"
    training = status.get("training")
    if isinstance(training, list) and len(training) > 1:  # members side by side (ensemble.parallel)
        return f"members {', '.join(str(int(k) + 1) for k in training)} of {members}"
    return f"member {int(status.get('member') or 0) + 1} of {members}"


def ensemble_fraction(status: Mapping[str, Any], member_status: Mapping[str, Any] | None) -> float:
    """The share of an ensemble run done: finished members plus the current member's share of its epochs."""
    members = ensemble_members(status)
    epoch, total = (member_status or {}).get("epoch") or 0, (member_status or {}).get("max_epochs") or 0
    current = min(epoch / total, 1.0) if total else 0.0
    return min((int(status.get("member") or 0) + current) / members, 1.0)


def _setting(config: Mapping[str, Any] | None, section: str, key: str) -> Any:
    part = (config or {}).get(section)
    return part.get(key) if isinstance(part, Mapping) else None


def schedule_text(config: Mapping[str, Any] | None, submitted: Mapping[str, Any] | None = None) -> str:
    """The schedule a training run uses, from its ``config.yaml`` (``config``: the settings left to the data size
    are written there, resolved, once its data are loaded) and, for a run the workbench started, the config it
    submitted (``submitted``: a schedule setting it left out or None was chosen from the data size). E.g.
    ``Schedule (automatic by data size): up to 200 epochs, patience 20, batch 32, validation share 0.2.``;
    "" without a config."""
    if not config:
        return ""
    values = {key: _setting(config, section, key) for section, key in SCHEDULE_KEYS}
    auto = submitted is not None and any(_setting(submitted, s, k) is None for s, k in SCHEDULE_KEYS)
    how = "" if submitted is None else f" ({SCHEDULES[SCHEDULE_AUTO if auto else SCHEDULE_HAND]})"
    if any(value is None for value in values.values()):
        return f"Schedule{how or ' (by data size)'}: chosen when the data are loaded."
    return (
        f"Schedule{how}: up to {values['max_epochs']} epochs, patience {values['patience']}, "
        f"batch {values['batch_size']}, validation share {values['val_ratio']:g}."
    )


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
