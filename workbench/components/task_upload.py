"""The Data page's logic: element coverage of a dataset, and mapping an uploaded table to a task."""

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

UPLOAD = "fm_data_upload"  # {"name": file name, "frame": DataFrame}: the table being mapped (survives page switches)
UPLOAD_SEEN = "fm_data_upload_seen"  # file_id of the last upload read (a file is read once, not on every rerun)
UPLOAD_ERROR = "fm_data_upload_error"  # why the last upload could not be read
NONE = "(none)"
TASK_TYPES = [t.value for t in TaskType]
NO_SPLIT_COLUMN = "__no_split_column__"  # split_column value that matches no column: the splitter decides


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
