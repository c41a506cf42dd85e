"""Pure helpers of the Train page: task choices, form validation, the training-config dict, the runs table."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fm_engine.datasets import BundledDataset, BundledTask

MLP_PRESETS: dict[str, list[int]] = {
    "small": [128, 64],
    "medium": [256, 128],
    "large": [512, 256],
}
TRANSFORMER_PRESETS: dict[str, dict[str, int]] = {
    "small": {"d_model": 32, "num_layers": 2, "nhead": 4},
    "medium": {"d_model": 64, "num_layers": 3, "nhead": 4},
    "large": {"d_model": 128, "num_layers": 4, "nhead": 8},
}
TYPE_LABELS = {"regression": "number", "classification": "classes", "kernel_regression": "curve"}


@dataclass(frozen=True)
class TaskChoice:
    """One task the user can tick: bundled (``dataset`` set) or uploaded (``spec`` set)."""

    name: str
    type: str
    unit: str
    group: str
    n_rows: int | None = None
    description: str = ""
    uploaded: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit_text})"

    @property
    def unit_text(self) -> str:
        return self.unit or TYPE_LABELS.get(self.type, self.type)


def _unit_of(task: BundledTask) -> str:
    if task.type == "classification":
        return "classes: " + ", ".join(task.classes or ())
    if task.type == "kernel_regression":
        return f"{task.unit}, vs T in {task.t_unit}"
    return task.unit


def bundled_choices(datasets: Sequence[BundledDataset]) -> dict[str, list[TaskChoice]]:
    """Dataset title -> its tasks as choices (catalog order)."""
    groups: dict[str, list[TaskChoice]] = {}
    for dataset in datasets:
        groups[dataset.title] = [
            TaskChoice(
                name=t.name,
                type=t.type,
                unit=_unit_of(t),
                group=dataset.title,
                n_rows=t.n_rows,
                description=t.description,
            )  # fmt: skip
            for t in dataset.tasks
        ]
    return groups


def uploaded_choices(uploaded: Mapping[str, Mapping[str, Any]] | None) -> list[TaskChoice]:
    """Choices for the tasks uploaded on the Data page (``{name: {"spec": dict, "frame": DataFrame}}``)."""
    choices = []
    for name, entry in (uploaded or {}).items():
        spec = dict(entry.get("spec") or {})
        kind = str(spec.get("type", "regression"))
        unit = spec.get("unit") or ""
        if kind == "classification" and spec.get("classes"):
            unit = "classes: " + ", ".join(str(c) for c in spec["classes"])
        elif kind == "kernel_regression":
            unit = f"{unit or '?'}, vs {spec.get('t_column', 't')} in {spec.get('t_unit') or '?'}"
        frame = entry.get("frame")
        rows = len(frame) if isinstance(frame, pd.DataFrame) else None
        choices.append(
            TaskChoice(name=str(spec.get("name") or name), type=kind, unit=unit, group="Your uploaded data",
                       n_rows=rows, description=str(spec.get("description", "")), uploaded=True)
        )  # fmt: skip
    return choices


def parse_hidden_dims(text: str) -> list[int]:
    """``"256, 128"`` -> ``[256, 128]``; raises ValueError with a readable message."""
    parts = [p for p in re.split(r"[\s,;x]+", text.strip()) if p]
    if not parts:
        raise ValueError("Hidden layer widths: give at least one width, e.g. 256, 128.")
    dims = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise ValueError(f"Hidden layer widths: '{part}' is not a whole number (write e.g. 256, 128).") from None
        if not 1 <= value <= 8192:
            raise ValueError(f"Hidden layer widths: {value} is out of range (1 to 8192 neurons).")
        dims.append(value)
    if len(dims) > 8:
        raise ValueError("Hidden layer widths: at most 8 layers.")
    return dims


def safe_file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-.") or "task"


@dataclass
class FormValues:
    """What the Train form holds (widget values, not yet validated)."""

    name: str
    bundled: list[str]
    uploaded: list[str] = field(default_factory=list)
    encoder: str = "mlp"
    hidden_dims: str = "256, 128"
    d_model: int = 32
    num_layers: int = 2
    nhead: int = 4
    dropout: float = 0.0
    loss_balancer: bool = False
    autoencoder: bool = True
    balanced_classes: bool = True
    max_epochs: int = 60
    patience: int = 15
    batch_size: int = 128
    lr: float = 2e-3
    val_ratio: float = 0.1
    test_ratio: float = 0.1
    seed: int = 42


def validate(values: FormValues) -> list[str]:
    """Readable problems with the form (empty if it can be submitted)."""
    errors = []
    if not values.name.strip():
        errors.append("Give the run a name.")
    if not values.bundled and not values.uploaded:
        errors.append("Select at least one task to train.")
    if values.encoder == "mlp":
        try:
            parse_hidden_dims(values.hidden_dims)
        except ValueError as error:
            errors.append(str(error))
    elif values.d_model % values.nhead:
        errors.append(f"Token width ({values.d_model}) must be divisible by the number of attention heads "
                      f"({values.nhead}).")  # fmt: skip
    if values.max_epochs < 1:
        errors.append("Train for at least 1 epoch.")
    if values.val_ratio + values.test_ratio >= 0.9:
        errors.append("Validation + test fractions leave too little training data (keep their sum below 0.9).")
    return errors


def build_config(values: FormValues, uploaded_files: Mapping[str, tuple[dict[str, Any], str]] | None = None,
                 classification: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The training-config dict (see ``TrainConfig``) for validated form values.

    ``uploaded_files``: uploaded task name -> (its TaskSpec dict, absolute path of its CSV file).
    ``classification``: names of the chosen classification tasks (balanced class weights apply to them).
    """
    tasks: list[dict[str, Any]] = []
    for name in values.bundled:
        entry: dict[str, Any] = {"bundled": name}
        if values.balanced_classes and name in classification:
            entry["class_weights"] = "balanced"
        tasks.append(entry)
    for name in values.uploaded:
        spec, path = (uploaded_files or {})[name]
        entry = {k: v for k, v in spec.items() if v is not None}
        entry["data_files"] = [str(path)]
        if values.balanced_classes and entry.get("type") == "classification" and "class_weights" not in entry:
            entry["class_weights"] = "balanced"
        tasks.append(entry)
    if values.encoder == "mlp":
        encoder: dict[str, Any] = {"type": "mlp", "hidden_dims": parse_hidden_dims(values.hidden_dims)}
    else:
        encoder = {"type": "transformer", "d_model": int(values.d_model), "num_layers": int(values.num_layers),
                   "nhead": int(values.nhead), "dim_feedforward": 2 * int(values.d_model)}  # fmt: skip
    encoder["dropout"] = float(values.dropout)
    return {
        "name": values.name.strip(),
        "seed": int(values.seed),
        "tasks": tasks,
        "model": {
            "encoder": encoder,
            "autoencoder": {"enabled": bool(values.autoencoder)},
            "loss_balancer": bool(values.loss_balancer),
        },  # fmt: skip
        "data": {
            "batch_size": int(values.batch_size),
            "val_ratio": float(values.val_ratio),
            "test_ratio": float(values.test_ratio),
        },  # fmt: skip
        "optimizer": {"lr": float(values.lr)},
        "trainer": {"max_epochs": int(values.max_epochs), "patience": int(values.patience), "progress_bar": False},
    }


def local_time(iso: str | None) -> str:
    """``2025-01-02T10:00:00+00:00`` -> ``2025-01-02 11:00`` in the server's local time."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(iso)


def runs_table(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per run (``RunInfo``-like objects with ``name``, ``state``, ``status``), newest first."""
    rows = []
    for run in runs:
        status = run.status
        best = status.get("best_val_loss")
        total = status.get("max_epochs")
        epoch = status.get("epoch", 0) or 0
        rows.append(
            {
                "run": run.name,
                "state": run.state,
                "started": local_time(status.get("started_at") or status.get("created_at")),
                "epochs": f"{epoch} / {total}" if total else str(epoch),
                "best val loss (normalised)": float(best) if isinstance(best, int | float) else None,
                "message": status.get("message", ""),
            }
        )
    columns = ["run", "state", "started", "epochs", "best val loss (normalised)", "message"]
    return pd.DataFrame(rows, columns=columns)


def upload_path(folder: Path, name: str) -> Path:
    return folder / f"{safe_file_name(name)}.csv"
