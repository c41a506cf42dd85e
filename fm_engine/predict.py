"""Predictions in physical units from a loaded checkpoint, for formulas or a whole table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from fm_engine.applicability import distance_columns
from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.compositions import COMPOSITION_COLUMN_NAMES, find_composition_column, parse_many
from fm_engine.descriptors import Descriptor
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.tasks import TaskType

DEFAULT_GRID_POINTS = 8


def default_t_grid(model: FlexibleMultiTaskModel, task: str, n: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """Evenly spaced ``t`` over the task's training range."""
    scaler = model.config.scalers[task]
    low = scaler.t_min if scaler.t_min is not None else scaler.t_mean - 2 * scaler.t_std
    high = scaler.t_max if scaler.t_max is not None else scaler.t_mean + 2 * scaler.t_std
    return np.linspace(low, high, n)


@torch.no_grad()
def predict_weights(
    model: FlexibleMultiTaskModel,
    weights: np.ndarray,
    *,
    t_grids: Mapping[str, Sequence[float]] | None = None,
    descriptor: Descriptor | None = None,
) -> dict[str, np.ndarray]:
    """Physical-unit outputs for weight rows (B, 94).

    Regression: (B,) or (B, d); classification: probabilities (B, C); sequence tasks: (B, len(grid))
    on ``t_grids[task]`` (default: the training range).
    """
    descriptor = descriptor or Descriptor(model.config.descriptor)
    model.eval()
    x = torch.as_tensor(descriptor.transform(weights), dtype=torch.float32)
    h = model.encode(x)
    n = len(x)
    points = {}
    grids = {}
    for name, task in model.tasks.items():
        if task.type is TaskType.KERNEL_REGRESSION:
            grid = np.asarray((t_grids or {}).get(name, default_t_grid(model, name)), dtype=np.float64)
            grids[name] = grid
            t = torch.as_tensor(np.tile(grid, n), dtype=torch.float32)
            index = torch.repeat_interleave(torch.arange(n), len(grid))
            points[name] = (t, index)
    outputs = model.heads_forward(h, points, tasks=list(model.tasks))
    result: dict[str, np.ndarray] = {}
    for name, task in model.tasks.items():
        physical = model.to_physical(name, outputs[name]).numpy()
        if task.type is TaskType.KERNEL_REGRESSION:
            physical = physical.reshape(n, len(grids[name]))
        result[name] = physical
    return result


def predict_frame(
    checkpoint: LoadedCheckpoint,
    frame: pd.DataFrame,
    *,
    composition_column: str | None = None,
    t_grids: Mapping[str, Sequence[float]] | None = None,
    distances: bool = True,
    chunk_size: int = 4096,
) -> pd.DataFrame:
    """The input columns + predictions; bad rows get an ``error`` and no predictions (never fail the batch).

    ``composition_column`` defaults to the first column named composition, formula, alloy, ... (any case).
    ``<task>_distance_to_training`` (with ``distances``): the fraction of atoms that differ from the
    nearest composition the task was trained on (0..1; see :mod:`fm_engine.applicability`) and
    ``extrapolated_for``, the tasks for which the row lies beyond every test composition; one
    ``distance_to_training`` (any task's compositions) for checkpoints without the per-task record.

    Columns: ``<task>`` (regression, in the task's unit; vector tasks ``<task>_<i>``), ``<task>`` class
    label + ``<task>_proba_<class>`` (classification), ``<task>@<t>`` (sequence tasks, one column per
    grid point; ``t`` in the task's ``t_unit``).
    """
    columns = ", ".join(map(str, frame.columns))
    if composition_column is None:
        composition_column = find_composition_column(list(frame.columns))
        if composition_column is None:
            raise ValueError(
                f"no composition column found (columns: {columns}); name it with --composition-column "
                f"(found automatically when called {' / '.join(COMPOSITION_COLUMN_NAMES)})"
            )
    elif composition_column not in frame.columns:
        raise ValueError(f"column '{composition_column}' not found (columns: {columns}); use --composition-column")
    model = checkpoint.model
    descriptor = Descriptor(model.config.descriptor)
    parsed = parse_many(frame[composition_column].tolist())
    out = frame.copy()
    errors = pd.Series("", index=frame.index, dtype=object)
    errors.iloc[parsed.bad["row"].to_numpy(dtype=int)] = parsed.bad["reason"].to_numpy()
    columns: dict[str, np.ndarray] = {}
    n = len(frame)
    grids = {name: np.asarray((t_grids or {}).get(name, default_t_grid(model, name)))
             for name, task in model.tasks.items() if task.type is TaskType.KERNEL_REGRESSION}  # fmt: skip
    for name, task in model.tasks.items():
        if task.type is TaskType.CLASSIFICATION:
            columns[name] = np.full(n, None, dtype=object)
            for label in task.classes or []:
                columns[f"{name}_proba_{label}"] = np.full(n, np.nan)
        elif task.type is TaskType.KERNEL_REGRESSION:
            for t in grids[name]:
                columns[f"{name}@{t:g}"] = np.full(n, np.nan)
        elif model.config.scalers[name].output_dim > 1:
            for i in range(model.config.scalers[name].output_dim):
                columns[f"{name}_{i}"] = np.full(n, np.nan)
        else:
            columns[name] = np.full(n, np.nan)
    for start in range(0, len(parsed.rows), chunk_size):
        rows = parsed.rows[start : start + chunk_size]
        predictions = predict_weights(
            model, parsed.weights[start : start + chunk_size], t_grids=grids, descriptor=descriptor
        )
        for name, task in model.tasks.items():
            values = predictions[name]
            if task.type is TaskType.CLASSIFICATION:
                classes = task.classes or []
                columns[name][rows] = np.asarray(classes, dtype=object)[values.argmax(axis=1)]
                for j, label in enumerate(classes):
                    columns[f"{name}_proba_{label}"][rows] = values[:, j]
            elif task.type is TaskType.KERNEL_REGRESSION:
                for j, t in enumerate(grids[name]):
                    columns[f"{name}@{t:g}"][rows] = values[:, j]
            elif values.ndim == 2:
                for i in range(values.shape[1]):
                    columns[f"{name}_{i}"][rows] = values[:, i]
            else:
                columns[name][rows] = values
    if distances:
        columns.update(distance_columns(checkpoint, parsed.weights, rows=parsed.rows, n_rows=n))
    for column, values in columns.items():
        out[column] = values
    out["error"] = errors.to_numpy()
    return out


def units_table(checkpoint: LoadedCheckpoint) -> pd.DataFrame:
    """Task, type, unit (and t unit / classes) of a checkpoint's outputs."""
    rows = []
    for task in checkpoint.model.tasks.values():
        rows.append({
            "task": task.name,
            "type": task.type.value,
            "unit": task.unit,
            "t_unit": task.t_unit,
            "classes": ", ".join(task.classes or []),
        })  # fmt: skip
    return pd.DataFrame(rows)
