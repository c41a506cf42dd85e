"""Predictions in physical units from a loaded checkpoint, for formulas or a whole table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from fm_engine.applicability import distance_column, distance_columns, training_domain
from fm_engine.calibration import SpreadScale
from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.columns import class_probability_column, curve_column, std_column, with_unit
from fm_engine.compositions import COMPOSITION_COLUMN_NAMES, ParsedBatch, find_composition_column, parse_many
from fm_engine.descriptors import Descriptor, check_weight_rows
from fm_engine.floors import physical_minimum
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.models.model import members_mean_and_spread
from fm_engine.tasks import TaskSpec, TaskType

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
    floored: bool = True,
) -> dict[str, np.ndarray]:
    """Physical-unit outputs for weight rows (B, 94).

    Regression: (B,) or (B, d); classification: probabilities (B, C); sequence tasks: (B, len(grid))
    on ``t_grids[task]`` (default: the training range). ``floored=False``: regression outputs not floored at the
    task's lower bound (see :meth:`FlexibleMultiTaskModel.to_physical`).
    """
    descriptor = descriptor or Descriptor(model.config.descriptor)
    check_weight_rows(weights)
    model.eval()
    x = descriptor.transform_torch(torch.as_tensor(np.asarray(weights), dtype=torch.float32))
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
        physical = model.to_physical(name, outputs[name], floored=floored).numpy()
        if task.type is TaskType.KERNEL_REGRESSION:
            physical = physical.reshape(n, len(grids[name]))
        result[name] = physical
    return result


def predict_members(
    models: Sequence[FlexibleMultiTaskModel],
    weights: np.ndarray,
    *,
    t_grids: Mapping[str, Sequence[float]] | None = None,
    descriptor: Descriptor | None = None,
    std_factors: Mapping[str, float | SpreadScale] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """:func:`predict_weights` of an ensemble's ``models``: per task the mean over the members of their physical
    outputs (each member's floored at the task's lower bound, as users see it; classification: the mean class
    probabilities) and the standard deviation over the members' RAW outputs (not floored: where every member sits
    at the bound the floored outputs agree exactly while the raw ones still say how unsure the members are;
    population, ``ddof=0``; same unit) calibrated with ``std_factors[task]`` (a ``SpreadScale``: ``sqrt((a * std)^2
    + b^2)``, or a plain factor a; default a = 1, b = 0; a checkpoint's :attr:`LoadedCheckpoint.spread_scales`),
    both float64.
    One model: its own outputs (exactly :func:`predict_weights`) and None (no spread)."""
    if len(models) == 1:
        return predict_weights(models[0], weights, t_grids=t_grids, descriptor=descriptor), None
    raw = [predict_weights(model, weights, t_grids=t_grids, descriptor=descriptor, floored=False) for model in models]
    scales = {t: v if isinstance(v, SpreadScale) else SpreadScale(a=v) for t, v in (std_factors or {}).items()}
    means: dict[str, np.ndarray] = {}
    stds: dict[str, np.ndarray] = {}
    for name in raw[0]:
        means[name], spread = members_mean_and_spread(models, name, [torch.from_numpy(r[name]) for r in raw])
        stds[name] = scales.get(name, SpreadScale()).apply(spread)
    return means, stds


def predict_checkpoint(
    checkpoint: LoadedCheckpoint,
    weights: np.ndarray,
    *,
    t_grids: Mapping[str, Sequence[float]] | None = None,
    descriptor: Descriptor | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """:func:`predict_members` of a checkpoint's members with its calibration: the mean and the calibrated
    standard deviation (None for a single model) per task."""
    return predict_members(checkpoint.models, weights, t_grids=t_grids, descriptor=descriptor,
                           std_factors=checkpoint.spread_scales)  # fmt: skip


OUTPUT_PREFIX = "pred_"
"""Put before an output column's name when the input already has a column of that name."""
OUTPUT_COLUMNS_ATTR = "fm_output_columns"
"""``DataFrame.attrs`` key of :func:`predict_frame`'s result: output name -> column name in the table."""
MAX_GRID_POINTS = 1000
T_RANGES = {"K": (0.0, 1e5), "kelvin": (0.0, 1e5), "C": (-273.15, 1e5), "°C": (-273.15, 1e5), "degC": (-273.15, 1e5)}
"""Physically sane ``t`` per ``t_unit`` (temperatures); any other unit: finite and within +-1e9."""


def check_t_grid(model: FlexibleMultiTaskModel, task: str, values: Sequence[float]) -> np.ndarray:
    """The ``t`` values for a sequence task as an array; ``ValueError`` naming the task and value unless
    every value is finite, within the physical range of the task's ``t_unit`` (no negative kelvin),
    distinct as a column name, and there are 1..:data:`MAX_GRID_POINTS` of them."""
    t_unit = model.tasks[task].t_unit or ""
    low, high = T_RANGES.get(t_unit.strip(), (-1e9, 1e9))
    unit = f" {t_unit}" if t_unit else ""
    try:
        grid = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"t grid of task '{task}': expected numbers, got {values!r}") from None
    if not 1 <= len(grid) <= MAX_GRID_POINTS:
        raise ValueError(f"t grid of task '{task}': {len(grid)} values (expected 1 to {MAX_GRID_POINTS})")
    for value in grid:
        if not np.isfinite(value):
            raise ValueError(f"t grid of task '{task}': {value} is not a finite number")
        if not low <= value <= high:
            raise ValueError(
                f"t grid of task '{task}': {value:g}{unit} is outside the physical range [{low:g}, {high:g}]{unit}"
            )
    names = [curve_column(task, t, t_unit) for t in grid]
    repeated = sorted({f"{t:g}" for t, name in zip(grid, names, strict=True) if names.count(name) > 1})
    if repeated:
        raise ValueError(f"t grid of task '{task}': {', '.join(repeated)} given twice (each value is one column)")
    return grid


def sequence_grids(
    model: FlexibleMultiTaskModel, t_grid: Sequence[float] | Mapping[str, Sequence[float]] | None
) -> dict[str, Sequence[float]]:
    """Task -> ``t`` values (unchecked, see :func:`resolve_t_grids`): ``t_grid`` itself when it is a mapping,
    else the same values for every sequence task (none: each task's default grid)."""
    if t_grid is None:
        return {}
    if isinstance(t_grid, Mapping):
        return dict(t_grid)
    return {name: t_grid for name, task in model.tasks.items() if task.type is TaskType.KERNEL_REGRESSION}


class CompositionColumnError(ValueError):
    """The table has no composition column (or not the one named); the message lists its columns."""


def composition_column_of(columns: Sequence[object], composition_column: str | None = None) -> str:
    """``composition_column`` if the table has it, else the first column named composition, formula, alloy, ...
    (any case); :class:`CompositionColumnError` listing the columns when there is none."""
    shown = ", ".join(map(str, columns))
    if composition_column is None:
        found = find_composition_column(list(columns))
        if found is None:
            raise CompositionColumnError(
                f"no composition column found (columns: {shown}; found automatically when called "
                f"{' / '.join(COMPOSITION_COLUMN_NAMES)})"
            )
        return found
    if composition_column not in columns:
        raise CompositionColumnError(f"column '{composition_column}' not found (columns: {shown})")
    return composition_column


def resolve_t_grids(
    model: FlexibleMultiTaskModel, t_grids: Mapping[str, Sequence[float]] | None = None
) -> dict[str, np.ndarray]:
    """Every sequence task's checked ``t`` grid: ``t_grids[task]`` or the default over its training range."""
    unknown = sorted(set(t_grids or {}) - set(model.tasks))
    if unknown:
        raise ValueError(f"t grid for unknown task(s) {', '.join(unknown)} (tasks: {', '.join(model.tasks)})")
    return {
        name: check_t_grid(model, name, (t_grids or {})[name])
        if name in (t_grids or {})
        else default_t_grid(model, name)
        for name, task in model.tasks.items()
        if task.type is TaskType.KERNEL_REGRESSION
    }


def prediction_columns(
    model: FlexibleMultiTaskModel, grids: Mapping[str, np.ndarray], *, spread: bool = False
) -> dict[str, list[str]]:
    """Per task, the names of its prediction columns (see :func:`predict_frame`); with ``spread`` (an ensemble),
    each value column followed by its ``_std`` column (not the predicted class)."""
    values = value_columns(model, grids)
    if not spread:
        return values
    return {
        name: [c for i, column in enumerate(columns)
               for c in ([column] if is_label_column(model, name, i) else [column, std_column(column)])]
        for name, columns in values.items()
    }  # fmt: skip


def is_label_column(model: FlexibleMultiTaskModel, task: str, index: int) -> bool:
    """True for the predicted-class column (the first of a classification task's :func:`value_columns`)."""
    return index == 0 and model.tasks[task].type is TaskType.CLASSIFICATION


def value_columns(model: FlexibleMultiTaskModel, grids: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """Per task, the names of its value columns, each with its unit (:mod:`fm_engine.columns`): the predicted class,
    class probabilities, values, curve points."""
    columns: dict[str, list[str]] = {}
    for name, task in model.tasks.items():
        if task.type is TaskType.CLASSIFICATION:
            columns[name] = [name] + [class_probability_column(name, label) for label in task.classes or []]
        elif task.type is TaskType.KERNEL_REGRESSION:
            columns[name] = [with_unit(curve_column(name, t, task.t_unit), task.unit) for t in grids[name]]
        elif model.config.scalers[name].output_dim > 1:
            columns[name] = [with_unit(f"{name}_{i}", task.unit) for i in range(model.config.scalers[name].output_dim)]
        else:
            columns[name] = [with_unit(name, task.unit)]
    return columns


IMPOSSIBLE_COLUMN = "below_physical_minimum"
"""The output column naming, per row, the tasks predicted below their physical minimum (see :func:`physical_minima`)."""
IMPOSSIBLE_MEANING = (
    "the model predicts a value the quantity cannot take (below the task's lower bound, or negative for a quantity "
    "that is never negative, such as a band gap, a modulus or a yield strength): read it as 'at or near the minimum', "
    "and as a sign that the model is unsure here."
)


def physical_minima(model: FlexibleMultiTaskModel) -> dict[str, float]:
    """Per regression / sequence task with one, the value below which a prediction is physically impossible
    (:func:`fm_engine.floors.physical_minimum`: the task's lower bound, or 0 for a never-negative quantity)."""
    minima = {}
    for name, task in model.tasks.items():
        if task.type is TaskType.CLASSIFICATION:
            continue
        scaler = model.config.scalers.get(name)
        minimum = physical_minimum(name=name, unit=task.unit, bound=scaler.floor if scaler is not None else None)
        if minimum is not None:
            minima[name] = minimum
    return minima


def impossible_flags(
    model: FlexibleMultiTaskModel, task_columns: Mapping[str, Sequence[str]], values: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Per row of ``values`` (column -> array, the columns of :func:`value_columns` ``task_columns``), the tasks
    predicted below their physical minimum (any of their value columns), as ``"; "``-joined
    :func:`impossible_text` (``""``: none; a missing value is never flagged)."""
    n_rows = len(next(iter(values.values()))) if values else 0
    flags = np.full(n_rows, "", dtype=object)
    minima = physical_minima(model)
    for name in task_columns:
        if (minimum := minima.get(name)) is None:
            continue
        below = np.zeros(n_rows, dtype=bool)
        for column in task_columns[name]:
            below |= np.asarray(values[column], dtype=np.float64) < minimum  # NaN: False
        text = impossible_text(model.tasks[name], minimum)
        flags[below] = np.where(flags[below] == "", text, flags[below] + "; " + text)
    return flags


def impossible_text(task: TaskSpec, minimum: float) -> str:
    """``yield_strength < 0 MPa``: how a task predicted below its physical minimum is named in a table."""
    return f"{task.name} < {minimum:g} {task.unit}".rstrip()


def output_columns(
    checkpoint: LoadedCheckpoint, grids: Mapping[str, np.ndarray], *, distances: bool = True
) -> list[str]:
    """Every column :func:`predict_frame` adds, in order (before any renaming)."""
    columns_by_task = prediction_columns(checkpoint.model, grids, spread=checkpoint.is_ensemble)
    names = [c for columns in columns_by_task.values() for c in columns]
    if distances:
        domains = [training_domain(checkpoint, task) for task in checkpoint.model.tasks]
        names += list(dict.fromkeys(distance_column(domain.task) for domain in domains))
        if any(domain.task is not None for domain in domains):
            names.append("extrapolated_for")
    return names + [IMPOSSIBLE_COLUMN, "error"]


def rename_collisions(input_columns: Sequence[object], outputs: Sequence[str]) -> dict[str, str]:
    """Output name -> column name: outputs whose name an input column already has get :data:`OUTPUT_PREFIX`
    (repeated until the name is free), so no input column is ever overwritten."""
    taken = {str(c) for c in input_columns}
    mapping: dict[str, str] = {}
    for name in outputs:
        final = name
        while final in taken:
            final = OUTPUT_PREFIX + final
        taken.add(final)
        mapping[name] = final
    return mapping


def predict_frame(
    checkpoint: LoadedCheckpoint,
    frame: pd.DataFrame,
    *,
    composition_column: str | None = None,
    t_grids: Mapping[str, Sequence[float]] | None = None,
    distances: bool = True,
    chunk_size: int = 1024,
    first_row: int = 0,
    parsed: ParsedBatch | None = None,
    distance_values: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The input columns + predictions; bad rows get an ``error`` and no predictions (never fail the batch).

    ``composition_column`` defaults to the first column named composition, formula, alloy, ... (any case).
    ``<task>_distance_to_training`` (with ``distances``): the fraction of atoms that differ from the
    nearest composition the task was trained on (0..1; see :mod:`fm_engine.applicability`) and
    ``extrapolated_for``, the tasks for which the row lies beyond every test composition; one
    ``distance_to_training`` (any task's compositions) for checkpoints without the per-task record.

    Columns, each value column naming its unit (:mod:`fm_engine.columns`): ``<task> [<unit>]`` (regression;
    vector tasks ``<task>_<i> [<unit>]``), ``<task>`` class label (a binary task's decision threshold applied, see
    :mod:`fm_engine.thresholds`) + ``<task>_proba_<class> [probability]`` (classification),
    ``<task>@<t><t_unit> [<unit>]`` (sequence tasks, one column per grid point, e.g. ``yield_strength@1073K [MPa]``).
    An ensemble checkpoint (:attr:`LoadedCheckpoint.is_ensemble`) gives the members' mean in these columns (the
    predicted class from the mean probabilities and the ensemble's decision threshold) and, after each value column,
    ``<quantity>_std [<unit>]``: the standard deviation over the members in the same unit, calibrated per task:
    sqrt((a * std)^2 + b^2) (see :func:`predict_checkpoint`); a single model has no ``_std`` columns.
    ``below_physical_minimum``: the tasks whose value (any curve point) lies below the task's physical minimum
    (:func:`physical_minima`), e.g. ``bulk_modulus < 0 GPa``; ``""`` for none.

    Input columns are never overwritten: an output whose name the input already uses (``error``, a task
    name, ...) is written as ``pred_<name>``; ``result.attrs["fm_output_columns"]`` maps each output name
    to its column. A row whose prediction comes out non-finite (model overflow) is an error row: its
    ``error`` names the tasks and it has no predictions. ``t_grids`` are checked by :func:`check_t_grid`.

    ``chunk_size``: rows per model batch; ``first_row``: the position of ``frame``'s first row in a larger
    table cut into chunks (batches align to it, so the chunks' results equal the whole table's exactly);
    ``parsed``: ``parse_many`` of the composition column, if already done (e.g. in another thread), and
    ``distance_values``: its :func:`~fm_engine.applicability.distance_columns`, if already computed.
    """
    composition_column = composition_column_of(list(frame.columns), composition_column)
    model = checkpoint.model
    grids = resolve_t_grids(model, t_grids)
    names = rename_collisions(frame.columns, output_columns(checkpoint, grids, distances=distances))
    descriptor = Descriptor(model.config.descriptor)
    if parsed is None:
        parsed = parse_many(frame[composition_column].tolist())
    n = len(frame)
    errors = np.full(n, "", dtype=object)
    errors[parsed.bad["row"].to_numpy(dtype=int)] = parsed.bad["reason"].to_numpy()
    task_columns = value_columns(model, grids)
    values: dict[str, np.ndarray] = {}
    for name in model.tasks:
        for i, column in enumerate(task_columns[name]):
            if is_label_column(model, name, i):
                values[column] = np.full(n, None, dtype=object)
                continue
            values[column] = np.full(n, np.nan)
            if checkpoint.is_ensemble:
                values[std_column(column)] = np.full(n, np.nan)
    finite = np.ones(len(parsed.rows), dtype=bool)
    failed: dict[int, list[str]] = {}  # good-row position -> tasks whose output is not finite
    # The model runs on blocks of exactly ``chunk_size`` rows aligned to the rows' positions in the whole
    # table (``first_row`` + position; unused slots padded), so a row's float32 result never depends on
    # how the table was cut into chunks (matrix kernels round differently for other shapes / positions).
    positions = first_row + parsed.rows
    cuts = np.flatnonzero(np.diff(positions // chunk_size)) + 1
    for members in np.split(np.arange(len(parsed.rows)), cuts) if len(parsed.rows) else []:
        start, rows = int(members[0]), parsed.rows[members]
        slots = positions[members] % chunk_size
        block = np.repeat(parsed.weights[members[:1]], chunk_size, axis=0)
        block[slots] = parsed.weights[members]
        predictions, spreads = predict_checkpoint(checkpoint, block, t_grids=grids, descriptor=descriptor)
        for name, task in model.tasks.items():
            output = predictions[name][slots].reshape(len(rows), -1)
            spread = spreads[name][slots].reshape(len(rows), -1) if spreads is not None else None
            ok = np.all(np.isfinite(output), axis=1)
            for i in np.flatnonzero(~ok):
                failed.setdefault(start + int(i), []).append(name)
            finite[start : start + len(rows)] &= ok
            if task.type is TaskType.CLASSIFICATION:
                classes = np.asarray(task.classes or [], dtype=object)
                values[name][rows] = np.where(ok, classes[model.predicted_classes(name, output)], None)
                output = output.astype(np.float64)
                outputs = task_columns[name][1:]
            else:
                outputs = task_columns[name]
            for j, column in enumerate(outputs):
                values[column][rows] = output[:, j]
                if spread is not None:
                    values[std_column(column)][rows] = spread[:, j]
    if not finite.all():  # an overflowing model: an error row, never a silent inf / NaN
        bad = np.flatnonzero(~finite)
        for i in bad:
            errors[parsed.rows[i]] = f"prediction is not a finite number for {', '.join(failed[i])} (model overflow)"
        for array in values.values():
            array[parsed.rows[bad]] = None if array.dtype == object else np.nan
    if distances:
        if distance_values is None:
            distance_values = distance_columns(checkpoint, parsed.weights, rows=parsed.rows, n_rows=n)
        values.update(distance_values)
    values[IMPOSSIBLE_COLUMN] = impossible_flags(model, task_columns, values)
    values["error"] = errors
    out = pd.concat([frame, pd.DataFrame({names[c]: v for c, v in values.items()}, index=frame.index)], axis=1)
    out.attrs[OUTPUT_COLUMNS_ATTR] = names
    return out


def error_column(predictions: pd.DataFrame) -> str:
    """The name of the ``error`` output column of :func:`predict_frame`'s result (``pred_error`` when the input
    already had an ``error`` column)."""
    return predictions.attrs.get(OUTPUT_COLUMNS_ATTR, {}).get("error", "error")


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
