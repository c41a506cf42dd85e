"""Predict: one formula -> every task of the active checkpoint, or a CSV batch -> a CSV of predictions."""

from __future__ import annotations

import streamlit as st

from fm_engine.applicability import beyond_tested
from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.predict import IMPOSSIBLE_COLUMN, IMPOSSIBLE_MEANING, default_t_grid, units_table
from fm_engine.tasks import TaskType
from workbench.components.predictions import (
    HOW_TO_READ,
    batch_extrapolation_warning,
    batch_impossible_warning,
    curve_figure,
    error_bar_figures,
    extrapolation_warning,
    impossible_warning,
    metric_caption,
    parse_t_grid,
    predict_formula,
    predict_table,
    probability_figure,
    table_columns,
    uncertainty_caption,
)
from workbench.components.uploads import guess_column, read_csv_bytes
from workbench.resources import active_checkpoint_or_explain


def _single_formula(checkpoint: LoadedCheckpoint) -> None:
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
    if checkpoint.is_ensemble:
        st.caption(uncertainty_caption(checkpoint))
    far = [p for p in result.tasks if p.extrapolated]
    if far:
        st.warning(extrapolation_warning(far))
    if impossible := impossible_warning(result.tasks):
        st.warning(impossible)
    scalar = [p for p in result.tasks if p.task.type is TaskType.REGRESSION]
    if scalar:
        columns = st.columns(min(len(scalar), 4))
        for i, prediction in enumerate(scalar):
            task = prediction.task
            label = f"{task.name} ({task.unit})" if task.unit else task.name
            caption = metric_caption(checkpoint, task.name) or None
            columns[i % len(columns)].metric(label, prediction.value_text, help=caption)
        st.caption(HOW_TO_READ["values"])
    for prediction in result.tasks:
        task = prediction.task
        if task.type is TaskType.CLASSIFICATION:
            p = prediction.probabilities[prediction.label]
            st.metric(f"{task.name} (predicted class)", prediction.label, help=metric_caption(checkpoint, task.name))
            st.caption(f"P({prediction.label}) = {p:.3f}")
            st.plotly_chart(probability_figure(prediction), width="stretch", key=f"predict_proba_{task.name}")
            st.caption(HOW_TO_READ["probabilities"])
        elif task.type is TaskType.KERNEL_REGRESSION:
            st.plotly_chart(curve_figure(prediction), width="stretch", key=f"predict_curve_{task.name}")
            caption = metric_caption(checkpoint, task.name)
            st.caption(HOW_TO_READ["curve"] + (f" {task.name}: {caption} over curve points." if caption else ""))


def _t_grids(checkpoint: LoadedCheckpoint) -> dict[str, list[float]]:
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
    return grids


def _batch(checkpoint: LoadedCheckpoint) -> None:
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
    grids = _t_grids(checkpoint)
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
        st.warning(batch_extrapolation_warning(far))
    if impossible := batch_impossible_warning(result.predicted):
        st.warning(impossible)
    flag = st.column_config.TextColumn(IMPOSSIBLE_COLUMN, help=f"Physically impossible value: {IMPOSSIBLE_MEANING}")
    order = table_columns(result.predicted, column)
    st.dataframe(result.predicted, hide_index=True, key="predict_table", column_order=order,
                 column_config={IMPOSSIBLE_COLUMN: flag})  # fmt: skip
    st.caption(HOW_TO_READ["table"])
    figures = error_bar_figures(checkpoint, result.predicted, column)
    for i, figure in enumerate(figures):
        st.plotly_chart(figure, width="stretch", key=f"predict_error_bars_{i}")
    if figures:
        st.caption(HOW_TO_READ["error_bars"] + " " + uncertainty_caption(checkpoint))
    st.download_button(
        "Download predictions (CSV)",
        data=result.csv_bytes(),
        file_name=f"{upload.name.rsplit('.', 1)[0]}_predictions.csv",
        mime="text/csv",
        key="download_predictions",
        on_click="ignore",
    )


st.title("Predict")
if (active := active_checkpoint_or_explain()) is not None:
    path, checkpoint = active
    st.caption(
        "Every value is in the task's unit, named in each header as `[unit]`; a curve point `<task>@<t><t unit>` is "
        "the value at that t."
    )
    with st.expander("Tasks and units"):
        st.dataframe(units_table(checkpoint), hide_index=True)
    _single_formula(checkpoint)
    st.divider()
    _batch(checkpoint)
