"""The Predict page's logic: one formula -> every task of a checkpoint; a CSV -> predictions and bad rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fm_engine.applicability import distance_column, distance_columns, training_domain
from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.columns import std_column, with_unit
from fm_engine.compositions import format_formula, parse_many
from fm_engine.plots import class_probabilities, predicted_curve, predictions_with_error_bars
from fm_engine.predict import (
    IMPOSSIBLE_COLUMN,
    IMPOSSIBLE_MEANING,
    OUTPUT_COLUMNS_ATTR,
    default_t_grid,
    error_column,
    physical_minima,
    predict_checkpoint,
)
from fm_engine.tasks import TaskSpec, TaskType
from workbench.components.uploads import guess_column, read_csv_bytes

CURVE_POINTS = 60
MAX_ERROR_BAR_ROWS = 60  # a table's first rows drawn with error bars (every row is in the table and the download)
EXTRAPOLATION = (
    "as far from a task's training compositions as its furthest test composition, or further (distance = fraction "
    "of atoms that differ from the nearest training composition), so the task's test error does not cover "
    "these values."
)
IMPOSSIBLE_MARK = "⚠"
HOW_TO_READ = {
    "values": "**How to read this:** each number is the model's estimate for this composition in the task's unit; "
    "the ? icon next to its name gives the test error measured on compositions the model never saw, a fair guide to "
    "how far off it may be.",
    "probabilities": "**How to read this:** the bars are the model's probabilities for each class (they sum to 1); "
    "the highlighted bar is the predicted class. Close bars mean the model cannot tell the classes apart here.",
    "curve": "**How to read this:** the predicted property across the temperature (t) range the task was trained "
    "on; the shaded band, for an ensemble, is ± 1 calibrated standard deviation. Outside this range the curve is "
    "not drawn because the model has no data there.",
    "table": "**How to read this:** one row per composition, every column headed by its unit; "
    "`<task>_distance_to_training` is 0 for a training composition and 1 for one with no element in common, "
    "`extrapolated_for` names the tasks whose test error does not cover the row, and `below_physical_minimum` the "
    "tasks whose value is physically impossible.",
    "error_bars": "**How to read this:** each point is a composition's predicted mean, its bar ± 1 calibrated "
    "standard deviation of the ensemble; overlapping bars mean the model cannot rank those compositions.",
}
"""The "how to read this" line under each result and figure of the Predict page (markdown)."""


@dataclass
class TaskPrediction:
    task: TaskSpec
    value: float | np.ndarray | None = None  # regression (scalar or vector), physical unit
    label: str | None = None  # classification: predicted class
    probabilities: dict[str, float] = field(default_factory=dict)  # classification
    t: np.ndarray | None = None  # sequence tasks: the grid (t_unit) ...
    curve: np.ndarray | None = None  # ... and the predicted values (unit)
    # an ensemble: the calibrated standard deviation of ``value`` / ``curve`` (same unit and shape); None otherwise
    std: float | np.ndarray | None = None
    # fraction of atoms that differ from the nearest composition the task was trained on
    distance_to_training: float = float("nan")
    tested_up_to: float = float("nan")  # the furthest of the task's test compositions from its training data
    extrapolated: bool = False  # as far from the training data as the test error was measured, or further
    physical_minimum: float | None = None  # below it a value is physically impossible (fm_engine.floors)

    @property
    def impossible(self) -> bool:
        """True when the value (any curve point) lies below the task's physical minimum."""
        values = self.curve if self.curve is not None else self.value
        if self.physical_minimum is None or values is None:
            return False
        return bool(np.any(np.asarray(values, dtype=np.float64) < self.physical_minimum))

    @property
    def value_text(self) -> str:
        """A regression value with its unit: ``212.4 GPa`` (a vector: its values, comma-separated)."""
        unit = f" {self.task.unit}" if self.task.unit else ""
        if isinstance(self.value, np.ndarray):
            spread = self.std if isinstance(self.std, np.ndarray) else [None] * len(self.value)
            return ", ".join(_with_spread(v, s) for v, s in zip(self.value, spread, strict=True)) + unit
        text = _with_spread(self.value, self.std) + unit
        return f"{text} {IMPOSSIBLE_MARK}" if self.impossible else text


def _with_spread(value: float, std: float | None) -> str:
    """``212.4`` or, with an ensemble's spread, ``212.4 ± 8.1``."""
    return f"{value:.4g}" if std is None else f"{value:.4g} ± {std:.2g}"


@dataclass
class FormulaPrediction:
    formula: str  # normalised atomic-fraction formula
    tasks: list[TaskPrediction]


def predict_formula(checkpoint: LoadedCheckpoint, text: str, *, curve_points: int = CURVE_POINTS) -> FormulaPrediction:
    """Every task's prediction for one formula; a bad formula raises ``ValueError`` with the reason."""
    parsed = parse_many([text])
    if parsed.n_bad:
        raise ValueError(str(parsed.bad["reason"].iloc[0]))
    model = checkpoint.model
    grids = {
        name: default_t_grid(model, name, curve_points)
        for name, task in model.tasks.items()
        if task.type is TaskType.KERNEL_REGRESSION
    }
    outputs, spreads = predict_checkpoint(checkpoint, parsed.weights, t_grids=grids)  # an ensemble: mean, std
    distances = distance_columns(checkpoint, parsed.weights, rows=np.arange(1), n_rows=1)  # as predict_frame
    flagged = str(distances.get("extrapolated_for", [""])[0]).split(", ")
    minima = physical_minima(model)
    results = []
    for name, task in model.tasks.items():
        values = outputs[name][0]
        domain = training_domain(checkpoint, name)
        where = {"distance_to_training": float(distances.get(distance_column(domain.task), [np.nan])[0]),
                 "tested_up_to": domain.tested_up_to, "extrapolated": name in flagged,
                 "physical_minimum": minima.get(name)}  # fmt: skip
        if task.type is TaskType.CLASSIFICATION:
            classes = list(task.classes or [str(i) for i in range(len(values))])
            results.append(
                TaskPrediction(
                    task=task,
                    label=classes[int(model.predicted_classes(name, np.asarray(values)[None, :])[0])],
                    probabilities={c: float(p) for c, p in zip(classes, values, strict=True)},
                    **where,
                )
            )
        elif task.type is TaskType.KERNEL_REGRESSION:
            std = np.asarray(spreads[name][0]) if spreads is not None else None
            results.append(TaskPrediction(task=task, t=np.asarray(grids[name]), curve=np.asarray(values), std=std,
                                          **where))  # fmt: skip
        else:
            value = np.asarray(values)
            std = np.asarray(spreads[name][0]) if spreads is not None else None
            results.append(TaskPrediction(task=task, value=float(value) if value.ndim == 0 else value,
                                          std=None if std is None else float(std) if std.ndim == 0 else std,
                                          **where))  # fmt: skip
    return FormulaPrediction(formula=format_formula(text), tasks=results)


def probability_figure(prediction: TaskPrediction) -> go.Figure:
    """Bar chart of a classification task's class probabilities (the predicted class highlighted)."""
    return class_probabilities(
        probabilities=prediction.probabilities,
        predicted=prediction.label or "",
        title=f"{prediction.task.name}: class probabilities",
    )


def curve_figure(prediction: TaskPrediction) -> go.Figure:
    """A sequence task's predicted curve over the training range of ``t``, axes labelled with units."""
    task = prediction.task
    t_name = task.t_column or "t"
    return predicted_curve(
        t=prediction.t,
        values=prediction.curve,
        name=task.name,
        t_label=f"{t_name} ({task.t_unit})" if task.t_unit else t_name,
        y_label=f"{task.name} ({task.unit})" if task.unit else task.name,
        title=f"{task.name} vs {t_name} (training range)",
        std=prediction.std,
    )


def uncertainty_caption(checkpoint: LoadedCheckpoint) -> str:
    """How to read an ensemble's error bars and bands (markdown; '' for a single model): mean +/- the calibrated
    standard deviation over its members, with each calibrated task's test coverage from the model card."""
    if not checkpoint.is_ensemble:
        return ""
    text = (f"**How to read the error bars and bands:** each value is the mean over the ensemble's "
            f"{len(checkpoint.members)} members, ± its calibrated standard deviation (the spread of the members' "
            "predictions times a per-task factor, with a floor; both fitted on the validation data). ")  # fmt: skip
    if checkpoint.calibration_note:
        return text + f"Not calibrated: {checkpoint.calibration_note}."
    record = checkpoint.card.ensemble.calibration if checkpoint.card and checkpoint.card.ensemble else {}
    shares = [f"{task} {100 * c.coverage_1_after:.0f} % / {100 * c.coverage_2_after:.0f} %"
              for task, c in record.items() if np.isfinite(c.coverage_1_after)]  # fmt: skip
    text += (
        "Read value ± 2 std as a 95 % interval. ± 1 std is a conservative band: errors are heavier-tailed "
        "than a normal distribution, so it usually holds more than 68 % of true values"
    )
    text += f" (within ± 1 / ± 2 std on the test data: {', '.join(shares)})." if shares else "."
    return text + " Class probabilities are averaged over the members without error bars."


def error_bar_figures(
    checkpoint: LoadedCheckpoint, predicted: pd.DataFrame, composition_column: str
) -> list[go.Figure]:
    """An ensemble's table predictions with error bars: per scalar regression task, the first
    :data:`MAX_ERROR_BAR_ROWS` predicted rows at mean +/- calibrated std (none for a single model)."""
    if not checkpoint.is_ensemble or predicted.empty:
        return []
    names = predicted.attrs.get(OUTPUT_COLUMNS_ATTR, {})
    rows = predicted.head(MAX_ERROR_BAR_ROWS)
    figures = []
    for name, task in checkpoint.model.tasks.items():
        header = with_unit(name, task.unit)
        column = names.get(header, header)
        spread = names.get(std_column(header), std_column(header))
        if task.type is not TaskType.REGRESSION or spread not in rows.columns:
            continue
        shown = f" (first {len(rows)} of {len(predicted)} rows)" if len(predicted) > len(rows) else ""
        figures.append(predictions_with_error_bars(
            labels=rows[composition_column].astype(str).tolist(), values=rows[column].tolist(),
            std=rows[spread].tolist(), y_label=f"{name} ({task.unit})" if task.unit else name,
            title=f"{name}: mean ± calibrated std{shown}",
        ))  # fmt: skip
    return figures


def parse_t_grid(text: str) -> list[float]:
    """``"300, 500, 800"`` -> [300.0, 500.0, 800.0]; raises ``ValueError`` naming the bad entry."""
    values = []
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"'{part.strip()}' is not a number") from None
        if not np.isfinite(value):
            raise ValueError(f"'{part.strip()}' is not a finite number")
        values.append(value)
    if not values:
        raise ValueError("give at least one value")
    return values


@dataclass
class BatchResult:
    predictions: pd.DataFrame  # every input row + predictions + ``error`` (what the download holds)
    bad_rows: pd.DataFrame  # row (line in the file, header = 1), input, reason
    message: str  # "" when at least one row was predicted, else what went wrong

    @property
    def predicted(self) -> pd.DataFrame:
        if self.predictions.empty:
            return self.predictions
        return self.predictions[self.predictions[error_column(self.predictions)] == ""]

    def csv_bytes(self) -> bytes:
        return self.predictions.to_csv(index=False).encode("utf-8")


def predict_table(
    checkpoint: LoadedCheckpoint,
    frame: pd.DataFrame,
    composition_column: str,
    *,
    t_grids: dict[str, list[float]] | None = None,
) -> BatchResult:
    """Predict a table; bad rows are listed (with their line in the file) and the rest predicted."""
    empty = pd.DataFrame(columns=["row", "input", "reason"])
    try:
        predictions = checkpoint.predict(frame, composition_column=composition_column, t_grid=t_grids)
    except ValueError as error:
        return BatchResult(pd.DataFrame(), empty, str(error))
    errors = predictions[error_column(predictions)].to_numpy()
    positions = np.flatnonzero(errors != "")
    bad = pd.DataFrame(
        {
            "row": positions + 2,  # line in the file: the header is line 1
            "input": frame[composition_column].iloc[positions].astype(str).to_numpy(),
            "reason": errors[positions],
        }
    )
    message = ""
    if len(positions) == len(frame):
        message = f"No row could be predicted: all {len(frame)} compositions in '{composition_column}' are invalid."
    return BatchResult(predictions, bad, message)


def predict_csv(
    checkpoint: LoadedCheckpoint,
    data: bytes,
    composition_column: str | None = None,
    *,
    t_grids: dict[str, list[float]] | None = None,
) -> BatchResult:
    """CSV bytes -> predictions, bad rows and a message (empty / malformed files give a message, no rows)."""
    frame, message = read_csv_bytes(data)
    if frame is None:
        return BatchResult(pd.DataFrame(), pd.DataFrame(columns=["row", "input", "reason"]), message)
    column = composition_column or frame.columns[guess_column(list(frame.columns))]
    return predict_table(checkpoint, frame, column, t_grids=t_grids)


def metric_caption(checkpoint: LoadedCheckpoint, task: str) -> str:
    """``test MAE 11.5 GPa (95 % CI 10.6 to 12.5, n = 490)`` from the model card, or ''."""
    entry = checkpoint.card.task(task) if checkpoint.card is not None else None
    if entry is None:
        return ""
    metrics, intervals = entry.test_metrics, entry.test_metrics_ci95
    if "mae" in metrics:
        key, text = "mae", f"test MAE {metrics['mae']:.3g} {entry.unit}".rstrip()
    elif "accuracy" in metrics:
        extra = f", ROC-AUC {metrics['roc_auc']:.3f}" if metrics.get("roc_auc") is not None else ""
        key, text = "accuracy", f"test accuracy {metrics['accuracy']:.3f}{extra}"
    else:
        return ""
    details = [f"95 % CI {intervals[key][0]:.3g} to {intervals[key][1]:.3g}"] if key in intervals else []
    details += [f"n = {int(metrics['n'])}"] if metrics.get("n") else []
    text += f" ({', '.join(details)})" if details else ""
    if entry.decision_threshold is not None:  # a binary task's predicted class follows its decision threshold
        how = "chosen on validation data" if entry.decision_threshold_rule == "validation" else "fixed"
        positive = (entry.classes or ["", "class 1"])[1]
        balanced = metrics.get("balanced_accuracy")
        text += f"; balanced accuracy {balanced:.3f}" if balanced is not None else ""
        text += f"; predicted '{positive}' when its probability > {entry.decision_threshold:.3g} ({how})"
    return text


def extrapolation_warning(far: list[TaskPrediction]) -> str:
    """The warning for one formula's tasks that lie at or beyond their furthest test composition (markdown)."""
    lines = [f"- **{p.task.name}**: distance {p.distance_to_training:.2f}, furthest test composition at "
             f"{p.tested_up_to:.2f}" for p in far]  # fmt: skip
    return f"Extrapolation: {EXTRAPOLATION}\n" + "\n".join(lines)


def batch_extrapolation_warning(far: dict[str, tuple[int, float]]) -> str:
    """The warning for a table's rows at or beyond each task's furthest test composition (task -> rows, tested up
    to)."""
    lines = [f"- **{task}**: {n_rows} row{'s' if n_rows > 1 else ''} at distance {tested_up_to:.2f} or beyond"
             for task, (n_rows, tested_up_to) in far.items()]  # fmt: skip
    return f"Extrapolation in some rows: {EXTRAPOLATION}\n" + "\n".join(lines)


def impossible_warning(predictions: list[TaskPrediction]) -> str:
    """The warning for one formula's tasks predicted below their physical minimum (markdown; '' when none)."""
    lines = [f"- **{p.task.name}**: below {p.physical_minimum:g} {p.task.unit}".rstrip()
             for p in predictions if p.impossible]  # fmt: skip
    if not lines:
        return ""
    return f"{IMPOSSIBLE_MARK} Physically impossible value: {IMPOSSIBLE_MEANING}\n" + "\n".join(lines)


def batch_impossible_warning(predicted: pd.DataFrame) -> str:
    """The warning for a table's rows with a value below its task's physical minimum, per task (markdown; '' when
    none): the column ``below_physical_minimum`` of :func:`fm_engine.predict.predict_frame` names them."""
    column = predicted.attrs.get(OUTPUT_COLUMNS_ATTR, {}).get(IMPOSSIBLE_COLUMN, IMPOSSIBLE_COLUMN)
    if column not in predicted.columns:
        return ""
    named = predicted[column].astype(str).str.split("; ").explode()
    counts = named[named != ""].value_counts()
    if counts.empty:
        return ""
    lines = [f"- **{text}**: {n} row{'s' if n > 1 else ''}" for text, n in counts.items()]
    return (f"{IMPOSSIBLE_MARK} Physically impossible values (column `{column}`): {IMPOSSIBLE_MEANING}\n"
            + "\n".join(lines))  # fmt: skip


def table_columns(predicted: pd.DataFrame, composition_column: str) -> list[str]:
    """The prediction table's columns in display order: the composition, then ``below_physical_minimum`` (so the
    marker is seen without scrolling right), then the rest as in the download."""
    flag = predicted.attrs.get(OUTPUT_COLUMNS_ATTR, {}).get(IMPOSSIBLE_COLUMN, IMPOSSIBLE_COLUMN)
    first = [c for c in (composition_column, flag) if c in predicted.columns]
    return first + [c for c in predicted.columns if c not in first]
