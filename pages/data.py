"""Data: browse the bundled datasets (rows, units, distributions, element coverage) and add your own CSV.

The page logic lives in pure functions (``element_coverage``, ``read_csv_bytes``, ``validate_mapping``,
``add_uploaded_task``) so tests can call them directly; the Streamlit UI runs only when Streamlit executes
this file as a page.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fm_engine.compositions import parse_many
from fm_engine.data.tables import TaskTable, load_task_table
from fm_engine.elements import element_symbols
from fm_engine.tasks import TaskSpec, TaskType
from workbench.components.uploads import guess_column, read_csv_bytes

UPLOAD = "fm_data_upload"  # {"name": file name, "frame": DataFrame}: the table being mapped (survives page switches)
UPLOAD_SEEN = "fm_data_upload_seen"  # file_id of the last upload read (a file is read once, not on every rerun)
UPLOAD_ERROR = "fm_data_upload_error"  # why the last upload could not be read
NONE = "(none)"
TASK_TYPES = [t.value for t in TaskType]
NO_SPLIT_COLUMN = "__no_split_column__"  # split_column value that matches no column: the splitter decides


# ----------------------------------------------------------------------------------------------- pure logic
def element_coverage(compositions: Iterable[object]) -> dict[str, float]:
    """Share of the (unique, parseable) compositions that contain each element; absent elements left out."""
    parsed = parse_many(pd.unique(pd.Series(list(compositions), dtype=object)))
    if not len(parsed.rows):
        return {}
    weights = parsed.weights[np.unique(parsed.keys, return_index=True)[1]]
    share = (weights > 0).mean(axis=0)
    return {symbol: float(s) for symbol, s in zip(element_symbols(), share, strict=True) if s > 0}


def suggest_task_name(file_name: str) -> str:
    stem = re.sub(r"\.[A-Za-z]+$", "", file_name or "")
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_").lower() or "my_task"


@dataclass
class MappingResult:
    spec: TaskSpec | None = None
    table: TaskTable | None = None
    bad_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["row", "input", "reason"]))
    error: str = ""  # why the mapping cannot be used ("" when ``table`` holds the loaded task)
    notes: list[str] = field(default_factory=list)  # warnings (duplicates, ...)

    @property
    def ok(self) -> bool:
        return self.table is not None and not self.error


def _bad_formulas(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    parsed = parse_many(frame[column].tolist(), row_labels=list(np.arange(len(frame)) + 2))
    return parsed.bad[["row", "input", "reason"]].reset_index(drop=True)


def validate_mapping(
    frame: pd.DataFrame,
    *,
    name: str,
    task_type: str,
    composition_column: str,
    target_column: str,
    t_column: str | None = None,
    split_column: str | None = None,
    unit: str = "",
    t_unit: str = "",
) -> MappingResult:
    """Build the TaskSpec and load the table with ``load_task_table``; bad rows listed with line and reason."""
    result = MappingResult()
    try:
        spec = TaskSpec(
            name=name.strip(),
            type=task_type,
            composition_column=composition_column,
            data_column=target_column,
            t_column=t_column or None,
            split_column=split_column or NO_SPLIT_COLUMN,
            unit=unit.strip(),
            t_unit=t_unit.strip(),
        )
    except ValueError as error:
        result.error = str(error)
        return result
    result.spec = spec
    if composition_column == target_column:
        result.error = "the composition column and the target column must differ"
        return result
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = load_task_table(spec, frame=frame)
        except ValueError as error:
            result.error = str(error)
            if composition_column in frame.columns:
                result.bad_rows = _bad_formulas(frame, composition_column)
            return result
    result.table = table
    result.bad_rows = table.bad_rows[["row", "input", "reason"]].reset_index(drop=True)
    result.notes = [str(w.message) for w in caught if "see bad_rows" not in str(w.message)]
    return result


def table_summary(table: TaskTable) -> dict[str, Any]:
    """Numbers shown after validation: compositions, points, classes, split labels found in the file."""
    summary: dict[str, Any] = {"compositions": len(table), "bad rows": len(table.bad_rows)}
    if table.t is not None:
        summary["points"] = int(sum(len(t) for t in table.t))
    if table.classes:
        summary["classes"] = ", ".join(table.classes)
    labelled = [s for s in table.split if s]
    if labelled:
        summary["split labels"] = ", ".join(f"{k} {labelled.count(k)}" for k in ("train", "val", "test"))
    return summary


def add_uploaded_task(store: MutableMapping[str, Any], key: str, spec: TaskSpec, frame: pd.DataFrame) -> bool:
    """Put the task in ``store[key][name]`` (what the Train page reads); True if it replaced one."""
    tasks = dict(store.get(key) or {})
    replaced = spec.name in tasks
    tasks[spec.name] = {"spec": spec.to_dict(), "frame": frame}
    store[key] = tasks
    return replaced


def uploaded_tasks_table(tasks: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for name, entry in tasks.items():
        spec = entry["spec"]
        rows.append(
            {
                "task": name,
                "type": spec.get("type", ""),
                "unit": spec.get("unit", ""),
                "t": f"{spec.get('t_column')} ({spec.get('t_unit', '')})" if spec.get("t_column") else "",
                "composition column": spec.get("composition_column", ""),
                "target column": spec.get("data_column", ""),
                "rows": len(entry["frame"]),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------- the UI
def _bundled() -> None:
    import plotly.express as px
    import streamlit as st

    from fm_engine.datasets import bundled_datasets
    from fm_engine.plots import ptable_heatmap

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
        label = f"{task.name} ({task.unit})" if task.unit else task.name
        if task.type == "classification":
            counts = frame[task.data_column].value_counts().rename_axis("class").reset_index(name="count")
            figure = px.bar(counts, x="class", y="count", title=f"{task.name}: class counts")
        elif task.t_column:
            curves = frame[frame["composition"].isin(frame["composition"].drop_duplicates().head(12))]
            figure = px.line(
                curves,
                x=task.t_column,
                y=task.data_column,
                color="composition",
                markers=True,
                labels={task.t_column: f"{task.t_column} ({task.t_unit})", task.data_column: label},
                title=f"{task.name}: first 12 curves",
            )
        else:
            figure = px.histogram(frame, x=task.data_column, nbins=60, labels={task.data_column: label})
            figure.update_layout(title=f"{task.name}: distribution", yaxis_title="compositions")
        st.plotly_chart(figure, width="stretch")

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


def _mapping(upload: dict[str, Any]) -> None:
    import streamlit as st

    from workbench import state

    frame: pd.DataFrame = upload["frame"]
    columns = list(frame.columns)
    st.markdown(f"**{upload['name']}**: {len(frame):,} rows, columns {', '.join(columns)}")
    st.dataframe(frame.head(200), hide_index=True, height=240, key="upload_preview")

    st.markdown("##### Map columns to a task")
    a, b, c = st.columns(3)
    name = a.text_input("Task name", value=suggest_task_name(upload["name"]), key="upload_task_name")
    task_type = b.selectbox("Type", TASK_TYPES, key="upload_type")
    unit = c.text_input("Unit of the target", value="", key="upload_unit", help="e.g. GPa; leave empty for classes")
    composition = a.selectbox("Composition column", columns, index=guess_column(columns), key="upload_composition")
    others = [col for col in columns if col != composition] or columns
    target = b.selectbox(
        "Target column",
        others,
        index=guess_column(others, ("target", "value", "y", name.strip().lower()), exclude=("split",)),
        key="upload_target",
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
    if len(result.bad_rows):
        st.warning(f"{len(result.bad_rows)} bad row(s) will be skipped (row = line in the file, header = 1):")
        st.dataframe(result.bad_rows, hide_index=True, key="upload_bad_rows")
    if not result.ok:
        return
    summary = table_summary(result.table)
    st.success("Valid: " + "; ".join(f"{k}: {v}" for k, v in summary.items()))
    existing = state.get(state.UPLOADED_TASKS) or {}
    from fm_engine.datasets import bundled_datasets

    bundled = {t.name for d in bundled_datasets() for t in d.tasks}
    if result.spec.name in bundled:
        st.warning(f"A bundled task is also called '{result.spec.name}': pick another name to train both together.")
    label = "Replace task" if result.spec.name in existing else "Add task"
    if st.button(label, type="primary", key="upload_add"):
        replaced = add_uploaded_task(st.session_state, state.UPLOADED_TASKS, result.spec, frame)
        st.success(f"{'Replaced' if replaced else 'Added'} task '{result.spec.name}': pick it on the Train page.")


def _upload() -> None:
    import streamlit as st

    from workbench import state
    from workbench.paths import ROOT, page

    st.header("Upload your own data")
    st.caption(
        "A CSV with a composition column and a target column (long format for curves: one row per point). "
        "Map the columns to a task, check the bad rows, and add the task: the Train page can then use it."
    )
    uploaded = st.file_uploader("CSV file", type=["csv", "txt"], key="data_upload_file")
    if uploaded is not None and state.get(UPLOAD_SEEN) != uploaded.file_id:  # a new file: read it once
        state.put(UPLOAD_SEEN, uploaded.file_id)
        frame, message = read_csv_bytes(uploaded.getvalue())
        if frame is None:
            state.put(UPLOAD_ERROR, f"{uploaded.name}: {message}")
            state.put(UPLOAD, None)
        else:
            state.put(UPLOAD_ERROR, None)
            state.put(UPLOAD, {"name": uploaded.name, "frame": frame})
    if state.get(UPLOAD_ERROR):
        st.error(state.get(UPLOAD_ERROR))
    example = ROOT / "samples" / "expt_gap.csv"
    if example.exists() and st.button("Or load an example: samples/expt_gap.csv (experimental band gaps)"):
        frame, _ = read_csv_bytes(example.read_bytes())
        state.put(UPLOAD_ERROR, None)
        state.put(UPLOAD, {"name": example.name, "frame": frame})
    current = state.get(UPLOAD)
    if current is not None:
        _mapping(current)
        if st.button("Discard this table", key="upload_discard"):
            state.put(UPLOAD, None)
            st.rerun()

    tasks = state.get(state.UPLOADED_TASKS) or {}
    st.subheader("Your uploaded tasks")
    if not tasks:
        st.caption("None yet in this session.")
        return
    st.dataframe(uploaded_tasks_table(tasks), hide_index=True, key="uploaded_tasks")
    left, right = st.columns([2, 1])
    remove = left.selectbox("Task", list(tasks), key="uploaded_remove_choice", label_visibility="collapsed")
    if right.button("Remove task", key="uploaded_remove"):
        state.put(state.UPLOADED_TASKS, {k: v for k, v in tasks.items() if k != remove})
        st.rerun()
    st.page_link(page("train.py"), label="Train a model with these tasks", icon=":material/model_training:")


def main() -> None:
    _bundled()
    import streamlit as st

    st.divider()
    _upload()


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the functions above
    main()
