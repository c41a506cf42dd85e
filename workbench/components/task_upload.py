"""The Data page's logic: element coverage of a dataset, and mapping an uploaded table to a task."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fm_engine.compositions import parse_many
from fm_engine.data.tables import NoUsableRowsError, TaskTable, load_task_table, non_numeric_cells
from fm_engine.elements import element_symbols
from fm_engine.tasks import TaskSpec, TaskType

UPLOAD = "fm_data_upload"  # {"name": file name, "frame": DataFrame}: the table being mapped (survives page switches)
UPLOAD_SEEN = "fm_data_upload_seen"  # file_id of the last upload read (a file is read once, not on every rerun)
UPLOAD_ERROR = "fm_data_upload_error"  # why the last upload could not be read
NONE = "(none)"
TASK_TYPES = [t.value for t in TaskType]
NO_SPLIT_COLUMN = "__no_split_column__"  # split_column value that matches no column: the splitter decides
TARGET_NAMES = ("target", "value", "y")  # column names suggested first as the target (with the task's name)
ID_LIKE = re.compile(r"(^|[\s_.-])(id|no|nr|idx|index)$|^(row|sample|#)$", re.IGNORECASE)  # never a target
ROWS_NOTE = "row = row of your file, the header being row 1"
UNUSED_COLUMNS = ["row", "input", "reason"]


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


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    """Columns holding only numbers (decimal commas were read as numbers when the file was read)."""
    return [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].notna().any()]


def suggest_target(frame: pd.DataFrame, columns: list[str], *, task_type: str, task_name: str = "") -> int:
    """Index in ``columns`` of the suggested target: for regression and curves only a numeric column (one named
    ``target``, ``value``, ``y`` or like the task first), never an id column (``sample_id``, ``No``); for
    classification the first column that is neither numeric nor an id. 0 when nothing fits."""
    numeric = set(numeric_columns(frame))
    wanted = (lambda c: c in numeric) if task_type != TaskType.CLASSIFICATION.value else (lambda c: c not in numeric)
    allowed = [c for c in columns if wanted(c) and not ID_LIKE.search(c.strip()) and c != "split"]
    named = {c.strip().lower(): c for c in allowed}
    for guess in (*TARGET_NAMES, task_name.strip().lower()):
        if guess in named:
            return columns.index(named[guess])
    return columns.index(allowed[0]) if allowed else 0


def non_numeric_target(frame: pd.DataFrame, column: str) -> str:
    """Why ``column`` cannot be a numeric target ("" when it can): none of its values, or more than half of
    them, are numbers; names an example value and its row (header = row 1)."""
    checked, bad = non_numeric_cells(frame[column])
    if not checked:
        return f"the target column '{column}' is empty"
    if len(bad) * 2 <= checked:
        return ""  # a few bad values: those rows are listed, the rest are used
    example = frame[column].iloc[bad[0]]
    return (
        f"the target column '{column}' is not numeric: row {bad[0] + 2} holds {str(example)!r} "
        f"({len(bad)} of the {checked} values checked are not numbers). Pick a column of numbers as the target, "
        "or the type classification if the column holds class labels"
    )


@dataclass
class MappingResult:
    spec: TaskSpec | None = None
    table: TaskTable | None = None
    unused_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNUSED_COLUMNS))
    n_rows: int = 0  # rows of the uploaded table
    error: str = ""  # why the mapping cannot be used ("" when ``table`` holds the loaded task)
    notes: list[str] = field(default_factory=list)  # warnings (duplicates, ...)

    @property
    def ok(self) -> bool:
        return self.table is not None and not self.error

    def rows_line(self) -> str:
        """``"7 of 10 rows used; 3 not used"``."""
        unused = len(self.unused_rows)
        return f"{self.n_rows - unused:,} of {self.n_rows:,} rows used; {unused:,} not used"


def _bad_formulas(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    parsed = parse_many(frame[column].tolist(), row_labels=list(np.arange(len(frame)) + 2))
    return parsed.bad[UNUSED_COLUMNS].reset_index(drop=True)


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
    """Build the TaskSpec and load the table with ``load_task_table``; every row not used is listed with its row
    (header = row 1) and reason: a bad formula or target, a missing target, a duplicate composition."""
    result = MappingResult(n_rows=len(frame))
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
    if spec.type is not TaskType.CLASSIFICATION and target_column in frame.columns:
        result.error = non_numeric_target(frame, target_column)
        if result.error:
            return result
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = load_task_table(spec, frame=frame)
        except NoUsableRowsError as error:
            result.error = str(error)
            result.unused_rows = error.unused_rows[UNUSED_COLUMNS].reset_index(drop=True)
            return result
        except ValueError as error:
            result.error = str(error)
            if composition_column in frame.columns:
                result.unused_rows = _bad_formulas(frame, composition_column)
            return result
    result.table = table
    result.unused_rows = table.unused_rows()[UNUSED_COLUMNS].reset_index(drop=True)
    result.notes = [
        str(w.message) for w in caught if "see bad_rows" not in str(w.message) and "duplicate" not in str(w.message)
    ]
    return result


def table_summary(table: TaskTable) -> dict[str, Any]:
    """Numbers shown after validation: compositions, points, classes, split labels found in the file."""
    summary: dict[str, Any] = {"compositions": len(table), "rows not used": len(table.unused_rows())}
    if table.t is not None:
        summary["points"] = int(sum(len(t) for t in table.t))
    if table.classes:
        summary["classes"] = ", ".join(table.classes)
    labelled = [s for s in table.split if s]
    if labelled:
        summary["split labels"] = ", ".join(f"{k} {labelled.count(k)}" for k in ("train", "val", "test"))
    return summary


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
