"""Data: browse the bundled datasets (rows, units, distributions, element coverage) and add your own CSV."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from fm_engine.datasets import bundled_datasets
from fm_engine.plots import ptable_heatmap, task_data_figure
from fm_engine.tasks import TaskType
from workbench import state
from workbench.components.task_upload import (
    NONE,
    ROWS_NOTE,
    TASK_TYPES,
    UPLOAD,
    UPLOAD_ERROR,
    UPLOAD_SEEN,
    element_coverage,
    numeric_columns,
    suggest_target,
    suggest_task_name,
    table_summary,
    uploaded_tasks_table,
    validate_mapping,
)
from workbench.components.uploads import guess_column, read_upload
from workbench.paths import ROOT, page
from workbench.saved_uploads import PROBLEMS, add_upload, drop_upload, uploaded_tasks

DISTRIBUTION_HOW_TO_READ = (
    "How to read this: how the task's values are spread over its compositions (for a curve task, each curve's "
    "points against t). A model learns best where most values lie; predictions far outside this range are "
    "extrapolations."
)


def _bundled() -> None:

    st.title("Bundled datasets")

    datasets = {dataset.name: dataset for dataset in bundled_datasets()}
    name = st.selectbox("Dataset", list(datasets), format_func=lambda n: f"{n}: {datasets[n].title}")
    dataset = datasets[name]
    st.markdown(dataset.description)
    st.markdown(f"**Source:** {dataset.source}  \n**License:** {dataset.license}  \n**Cite:** {dataset.citation}")

    task = st.selectbox("Task", dataset.tasks, format_func=lambda t: f"{t.name} ({t.unit or t.type})")
    frame: pd.DataFrame = task.frame()
    left, right = st.columns([1, 1])
    with left:
        st.metric("Rows", f"{len(frame):,}")
        st.metric("Compositions", f"{frame['composition'].nunique():,}")
        st.dataframe(frame.head(500), hide_index=True, height=360)
    with right:
        figure = task_data_figure(
            frame=frame, name=task.name, kind=task.type, value_column=task.data_column, unit=task.unit,
            t_column=task.t_column, t_unit=task.t_unit,
        )  # fmt: skip
        st.plotly_chart(figure, width="stretch")
        st.caption(DISTRIBUTION_HOW_TO_READ)

    coverage = st.cache_data(element_coverage, show_spinner=False)(tuple(frame["composition"].unique()))
    st.plotly_chart(
        ptable_heatmap(
            coverage,
            title=f"{task.name}: share of compositions containing each element (grey: never present)",
            colorbar_title="share",
            value_format=".0%",
        ),
        width="stretch",
        key="data_coverage",
    )
    st.caption(
        "How to read this: the share of this task's compositions that contain each element. Predictions for "
        "elements that are rare or grey here rest on few or no examples: check their distance to the training data."
    )


def _mapping(upload: dict[str, Any]) -> None:

    frame: pd.DataFrame = upload["frame"]
    columns = list(frame.columns)
    read_as = f" (read as: {upload['read_as']})" if upload.get("read_as") else ""
    st.markdown(f"**{upload['name']}**{read_as}: {len(frame):,} rows, columns {', '.join(columns)}")
    st.dataframe(frame.head(200), hide_index=True, height=240, key="upload_preview")

    st.markdown("##### Map columns to a task")
    a, b, c = st.columns(3)
    name = a.text_input("Task name", value=suggest_task_name(upload["name"]), key="upload_task_name")
    task_type = b.selectbox("Type", TASK_TYPES, key="upload_type")
    unit = c.text_input("Unit of the target", value="", key="upload_unit", help="e.g. GPa; leave empty for classes")
    composition = a.selectbox("Composition column", columns, index=guess_column(columns), key="upload_composition")
    others = [col for col in columns if col != composition] or columns
    numeric = ", ".join(c for c in numeric_columns(frame) if c in others) or "none"
    target = b.selectbox(
        "Target column",
        others,
        index=suggest_target(frame, others, task_type=task_type, task_name=name),
        key="upload_target",
        help=f"Numeric columns of this file: {numeric}. Regression and curves need numbers; classes may be text.",
    )
    optional = [NONE, *columns]
    split = c.selectbox(
        "Split column (optional)",
        optional,
        index=optional.index("split") if "split" in optional else 0,
        key="upload_split",
        help="train / val / test labels; without one the split is drawn for you",
    )
    t_column = t_unit = None
    if task_type == TaskType.KERNEL_REGRESSION.value:
        a2, b2, _ = st.columns(3)
        t_column = a2.selectbox("t column (the curve axis)", optional, key="upload_t")
        t_unit = b2.text_input("Unit of t", value="", key="upload_t_unit", help="e.g. K")

    result = validate_mapping(
        frame,
        name=name,
        task_type=task_type,
        composition_column=composition,
        target_column=target,
        t_column=None if t_column in (None, NONE) else t_column,
        split_column=None if split == NONE else split,
        unit=unit,
        t_unit=t_unit or "",
    )
    if result.error:
        st.error(f"This mapping cannot be used: {result.error}")
    for note in result.notes:
        st.warning(note)
    if len(result.unused_rows) or result.ok:
        st.markdown(f"**{result.rows_line()}**")
    if len(result.unused_rows):
        st.caption(f"Rows not used, with the reason ({ROWS_NOTE}):")
        st.dataframe(result.unused_rows, hide_index=True, key="upload_unused_rows")
        st.download_button(
            "Download the rows not used (CSV)",
            result.unused_rows.to_csv(index=False).encode("utf-8"),
            file_name=f"{suggest_task_name(name)}_rows_not_used.csv",
            mime="text/csv",
            key="upload_unused_download",
        )
    if not result.ok:
        return
    summary = table_summary(result.table)
    st.success("Valid: " + "; ".join(f"{k}: {v}" for k, v in summary.items()))
    existing = uploaded_tasks(st.session_state, state.UPLOADED_TASKS)

    bundled = {t.name for d in bundled_datasets() for t in d.tasks}
    if result.spec.name in bundled:
        st.warning(f"A bundled task is also called '{result.spec.name}': pick another name to train both together.")
    label = "Replace task" if result.spec.name in existing else "Add task"
    if st.button(label, type="primary", key="upload_add"):
        entry = {
            "spec": result.spec.to_dict(),
            "frame": frame,
            "source": upload["name"],
            "read_as": upload.get("read_as", ""),
        }
        replaced = add_upload(st.session_state, state.UPLOADED_TASKS, result.spec.name, entry)
        st.success(
            f"{'Replaced' if replaced else 'Added'} task '{result.spec.name}', saved in your workspace: "
            "pick it on the Train page."
        )


def _read(file_name: str, data: bytes) -> None:
    frame, message, found = read_upload(data)
    if frame is None:
        state.put(UPLOAD_ERROR, f"{file_name}: {message}")
        state.put(UPLOAD, None)
    else:
        state.put(UPLOAD_ERROR, None)
        state.put(UPLOAD, {"name": file_name, "frame": frame, "read_as": found.describe()})


def _upload() -> None:

    st.header("Upload your own data")
    st.caption(
        "A CSV with a composition column and a target column (long format for curves: one row per point): "
        "comma-, semicolon- or tab-separated, decimal point or comma, UTF-8 or Windows (cp1252) text. "
        "Map the columns to a task, check the rows not used, and add the task: it is saved in your workspace "
        "and the Train page can use it."
    )
    uploaded = st.file_uploader("CSV file", type=["csv", "txt"], key="data_upload_file")
    if uploaded is not None and state.get(UPLOAD_SEEN) != uploaded.file_id:  # a new file: read it once
        state.put(UPLOAD_SEEN, uploaded.file_id)
        _read(uploaded.name, uploaded.getvalue())
    if state.get(UPLOAD_ERROR):
        st.error(state.get(UPLOAD_ERROR))
    example = ROOT / "samples" / "expt_gap.csv"
    if example.exists() and st.button("Or load an example: samples/expt_gap.csv (experimental band gaps)"):
        _read(example.name, example.read_bytes())
    current = state.get(UPLOAD)
    if current is not None:
        _mapping(current)
        if st.button("Discard this table", key="upload_discard"):
            state.put(UPLOAD, None)
            st.rerun()

    tasks = uploaded_tasks(st.session_state, state.UPLOADED_TASKS)
    st.subheader("Your uploaded tasks")
    for problem in state.get(PROBLEMS) or []:
        st.warning(problem)
    if not tasks:
        st.caption("None yet: tasks you add are saved in your workspace and listed here.")
        return
    st.dataframe(uploaded_tasks_table(tasks), hide_index=True, key="uploaded_tasks")
    left, right = st.columns([2, 1])
    remove = left.selectbox("Task", list(tasks), key="uploaded_remove_choice", label_visibility="collapsed")
    if right.button("Remove task", key="uploaded_remove", help="Removes it from this list and from your workspace"):
        drop_upload(st.session_state, state.UPLOADED_TASKS, remove)
        st.rerun()
    st.page_link(page("train.py"), label="Train a model with these tasks", icon=":material/model_training:")


_bundled()
st.divider()
_upload()
