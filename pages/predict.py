"""Predict: one formula -> every task of the active checkpoint, or a CSV batch -> a CSV of predictions.

The page logic lives in pure functions (``predict_formula``, ``predict_csv``, the figure builders) so
tests can call them directly; the Streamlit UI runs only when Streamlit executes this file as a page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from fm_engine.applicability import beyond_tested, distance_column, distance_columns, training_domain
from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.compositions import format_formula, parse_many
from fm_engine.predict import default_t_grid, error_column, predict_frame, predict_weights
from fm_engine.tasks import TaskSpec, TaskType
from workbench.components.uploads import guess_column, read_csv_bytes

CURVE_POINTS = 60
EXTRAPOLATION = (
    "further from a task's training compositions than any of its test compositions (distance = fraction of "
    "atoms that differ from the nearest training composition), so the task's test error does not cover "
    "these values."
)


# ----------------------------------------------------------------------------------------------- pure logic
@dataclass
class TaskPrediction:
    task: TaskSpec
    value: float | np.ndarray | None = None  # regression (scalar or vector), physical unit
    label: str | None = None  # classification: predicted class
    probabilities: dict[str, float] = field(default_factory=dict)  # classification
    t: np.ndarray | None = None  # sequence tasks: the grid (t_unit) ...
    curve: np.ndarray | None = None  # ... and the predicted values (unit)
    # fraction of atoms that differ from the nearest composition the task was trained on
    distance_to_training: float = float("nan")
    tested_up_to: float = float("nan")  # the furthest of the task's test compositions from its training data
    extrapolated: bool = False  # further from the training data than the test error was measured


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
    outputs = predict_weights(model, parsed.weights, t_grids=grids)
    distances = distance_columns(checkpoint, parsed.weights, rows=np.arange(1), n_rows=1)  # as predict_frame
    flagged = str(distances.get("extrapolated_for", [""])[0]).split(", ")
    results = []
    for name, task in model.tasks.items():
        values = outputs[name][0]
        domain = training_domain(checkpoint, name)
        where = {"distance_to_training": float(distances.get(distance_column(domain.task), [np.nan])[0]),
                 "tested_up_to": domain.tested_up_to, "extrapolated": name in flagged}  # fmt: skip
        if task.type is TaskType.CLASSIFICATION:
            classes = list(task.classes or [str(i) for i in range(len(values))])
            results.append(
                TaskPrediction(
                    task=task,
                    label=classes[int(np.argmax(values))],
                    probabilities={c: float(p) for c, p in zip(classes, values, strict=True)},
                    **where,
                )
            )
        elif task.type is TaskType.KERNEL_REGRESSION:
            results.append(TaskPrediction(task=task, t=np.asarray(grids[name]), curve=np.asarray(values), **where))
        else:
            value = np.asarray(values)
            results.append(TaskPrediction(task=task, value=float(value) if value.ndim == 0 else value, **where))
    return FormulaPrediction(formula=format_formula(text), tasks=results)


def probability_figure(prediction: TaskPrediction) -> go.Figure:
    """Bar chart of class probabilities (the predicted class highlighted)."""
    probabilities = prediction.probabilities
    frame = pd.DataFrame({"class": list(probabilities), "probability": list(probabilities.values())})
    frame["predicted"] = frame["class"] == prediction.label
    figure = px.bar(
        frame,
        x="class",
        y="probability",
        color="predicted",
        color_discrete_map={True: "#1f77b4", False: "#aec7e8"},
        range_y=[0, 1],
        title=f"{prediction.task.name}: class probabilities",
    )
    figure.update_layout(showlegend=False, height=300, margin={"t": 40, "b": 0})
    return figure


def curve_figure(prediction: TaskPrediction) -> go.Figure:
    """The predicted curve over the training range of ``t``, axes labelled with units."""
    task = prediction.task
    t_label = f"{task.t_column or 't'} ({task.t_unit})" if task.t_unit else (task.t_column or "t")
    y_label = f"{task.name} ({task.unit})" if task.unit else task.name
    figure = go.Figure(go.Scatter(x=prediction.t, y=prediction.curve, mode="lines", name=task.name))
    figure.update_layout(
        title=f"{task.name} vs {task.t_column or 't'} (training range)",
        xaxis_title=t_label,
        yaxis_title=y_label,
        height=320,
        margin={"t": 40, "b": 0},
    )
    return figure


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
        predictions = predict_frame(checkpoint, frame, composition_column=composition_column, t_grids=t_grids)
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
    entry = next((e for e in checkpoint.card.get("tasks", []) if e.get("name") == task), {})
    metrics = entry.get("test_metrics") or {}
    intervals = entry.get("test_metrics_ci95") or {}
    if "mae" in metrics:
        key, text = "mae", f"test MAE {metrics['mae']:.3g} {entry.get('unit', '')}".rstrip()
    elif "accuracy" in metrics:
        extra = f", ROC-AUC {metrics['roc_auc']:.3f}" if metrics.get("roc_auc") is not None else ""
        key, text = "accuracy", f"test accuracy {metrics['accuracy']:.3f}{extra}"
    else:
        return ""
    details = [f"95 % CI {intervals[key][0]:.3g} to {intervals[key][1]:.3g}"] if key in intervals else []
    details += [f"n = {int(metrics['n'])}"] if metrics.get("n") else []
    return text + (f" ({', '.join(details)})" if details else "")


# --------------------------------------------------------------------------------------------------- the UI
def _single_formula(checkpoint: LoadedCheckpoint) -> None:
    import streamlit as st

    st.subheader("One formula")
    text = st.text_input(
        "Formula",
        value="Al0.3CoCrFeNi",
        key="predict_formula",
        help="Integer or fractional amounts, parentheses, or space-separated forms; all amounts are atomic.",
    )
    if not text.strip():
        st.info("Enter a formula, e.g. Al0.3CoCrFeNi, Fe2O3 or Ca3(PO4)2.")
        return
    try:
        result = predict_formula(checkpoint, text)
    except ValueError as error:
        st.error(f"Cannot predict this formula: {error}")
        return
    st.caption(f"Atomic fractions: **{result.formula}**")
    far = [p for p in result.tasks if p.extrapolated]
    if far:
        st.warning(
            f"Extrapolation: {EXTRAPOLATION}\n"
            + "\n".join(
                f"- **{p.task.name}**: distance {p.distance_to_training:.2f}, test compositions up to "
                f"{p.tested_up_to:.2f}"
                for p in far
            )
        )
    scalar = [p for p in result.tasks if p.task.type is TaskType.REGRESSION]
    if scalar:
        columns = st.columns(min(len(scalar), 4))
        for i, prediction in enumerate(scalar):
            task = prediction.task
            unit = f" {task.unit}" if task.unit else ""
            if isinstance(prediction.value, np.ndarray):
                value = ", ".join(f"{v:.4g}" for v in prediction.value) + unit
            else:
                value = f"{prediction.value:.4g}{unit}"
            label = f"{task.name} ({task.unit})" if task.unit else task.name
            columns[i % len(columns)].metric(label, value, help=metric_caption(checkpoint, task.name) or None)
    for prediction in result.tasks:
        task = prediction.task
        if task.type is TaskType.CLASSIFICATION:
            p = prediction.probabilities[prediction.label]
            st.metric(f"{task.name} (predicted class)", prediction.label, help=metric_caption(checkpoint, task.name))
            st.caption(f"P({prediction.label}) = {p:.3f}")
            st.plotly_chart(probability_figure(prediction), width="stretch", key=f"predict_proba_{task.name}")
        elif task.type is TaskType.KERNEL_REGRESSION:
            st.plotly_chart(curve_figure(prediction), width="stretch", key=f"predict_curve_{task.name}")
            caption = metric_caption(checkpoint, task.name)
            if caption:
                st.caption(f"{task.name}: {caption} over curve points.")


def _batch(checkpoint: LoadedCheckpoint) -> None:
    import streamlit as st

    st.subheader("A CSV file")
    st.caption(
        "One composition per row; every other column is kept. Bad rows are listed with their reason and "
        "the rest is predicted. `<task>_distance_to_training` is the fraction of atoms that differ from the "
        "nearest composition the task was trained on (0 = seen in training, 1 = no element in common)."
    )
    upload = st.file_uploader("CSV with a composition column", type=["csv", "txt"], key="predict_upload")
    if upload is None:
        return
    frame, message = read_csv_bytes(upload.getvalue())
    if frame is None:
        st.error(message)
        return
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    column = st.selectbox("Composition column", columns, index=guess_column(columns), key="predict_composition_column")
    grids: dict[str, list[float]] = {}
    sequence_tasks = [t for t in checkpoint.model.tasks.values() if t.type is TaskType.KERNEL_REGRESSION]
    if sequence_tasks:
        with st.expander("Grid of t values for the sequence tasks"):
            for task in sequence_tasks:
                default = ", ".join(f"{v:.4g}" for v in default_t_grid(checkpoint.model, task.name))
                text = st.text_input(
                    f"{task.name}: {task.t_column or 't'} values ({task.t_unit})",
                    value=default,
                    key=f"predict_grid_{task.name}",
                )
                try:
                    grids[task.name] = parse_t_grid(text)
                except ValueError as error:
                    st.error(f"{task.name}: {error}; the default grid is used.")
    with st.spinner("Predicting ..."):
        result = predict_table(checkpoint, frame, column, t_grids=grids)
    if result.message:
        st.error(result.message)
    if len(result.bad_rows):
        st.warning(f"{len(result.bad_rows)} of {len(frame)} rows could not be predicted (row = line in the file).")
        st.dataframe(result.bad_rows, hide_index=True, key="predict_bad_rows")
    if result.predictions.empty or result.message:
        return
    st.success(f"Predicted {len(result.predicted)} of {len(frame)} rows.")
    far = beyond_tested(checkpoint, result.predicted)
    if far:
        st.warning(
            f"Extrapolation in some rows: {EXTRAPOLATION}\n"
            + "\n".join(
                f"- **{task}**: {n_rows} row{'s' if n_rows > 1 else ''} beyond distance {tested_up_to:.2f}"
                for task, (n_rows, tested_up_to) in far.items()
            )
        )
    st.dataframe(result.predicted, hide_index=True, key="predict_table")
    st.download_button(
        "Download predictions (CSV)",
        data=result.csv_bytes(),
        file_name=f"{upload.name.rsplit('.', 1)[0]}_predictions.csv",
        mime="text/csv",
        key="download_predictions",
        on_click="ignore",
    )


def main() -> None:
    import streamlit as st

    from fm_engine.predict import units_table
    from workbench.resources import active_checkpoint_or_explain

    st.title("Predict")
    active = active_checkpoint_or_explain()
    if active is None:
        return
    path, checkpoint = active
    st.caption(f"Model: **{path.name}** (choose another in the sidebar). Every value is in the task's unit.")
    with st.expander("Tasks and units"):
        st.dataframe(units_table(checkpoint), hide_index=True)
    _single_formula(checkpoint)
    st.divider()
    _batch(checkpoint)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the functions above
    main()
