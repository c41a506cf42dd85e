"""Reading one task's data file(s) into a table keyed by canonical composition."""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fm_engine.compositions import parse_many
from fm_engine.tasks import TaskSpec, TaskType

SPLIT_LABELS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}
SPLIT_LABELS |= {"test": "test", "testing": "test"}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a csv / parquet / pkl table; every failure becomes a ``ValueError`` naming the file.

    Pickles are only read from local files a user names in a config (never from uploads).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"data file not found: {path}")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith((".csv", ".csv.gz", ".txt")):
            frame = pd.read_csv(path)
        elif suffixes.endswith(".parquet"):
            frame = pd.read_parquet(path)
        elif suffixes.endswith((".pkl", ".pickle", ".pd", ".pd.xz", ".pkl.xz", ".pd.z")):
            frame = pd.read_pickle(path)
        else:
            raise ValueError(f"{path.name}: unsupported file type (use .csv, .parquet or .pkl)")
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path.name}: the file is empty") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path.name}: malformed CSV ({str(error).strip()})") from None
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"{path.name}: cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{path.name}: does not hold a table")
    if frame.empty:
        raise ValueError(f"{path.name}: the table has no rows")
    return frame


def _literal(value: object) -> object:
    """Parse a list-valued CSV cell such as ``"[1.0, 2.5]"`` safely (no code execution)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "(")):
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f"cannot read list value {value!r}") from None
    return value


def _as_float_array(value: object) -> np.ndarray:
    value = _literal(value)
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    return array


@dataclass
class TaskTable:
    """One task's labelled compositions, unique by canonical key.

    ``values``: regression (n,) or (n, d) float64 in the file's unit; classification (n,) int64 class
    indices; kernel regression: a list of (n_points,) arrays with matching ``t`` arrays, sorted by ``t``.
    ``split``: per-key label from the file's split column (``None`` where absent).
    ``bad_rows``: rows that were skipped, with ``file``, ``row`` (1-based line in the file, header = 1),
    ``input`` and ``reason``.
    """

    task: TaskSpec
    keys: list[str]
    weights: np.ndarray
    values: np.ndarray | list[np.ndarray]
    t: list[np.ndarray] | None = None
    split: list[str | None] = field(default_factory=list)
    classes: list[str] | None = None
    bad_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["file", "row", "input", "reason"]))
    n_duplicates: int = 0

    def __len__(self) -> int:
        return len(self.keys)


def _gather_frames(task: TaskSpec, base_dir: Path | None, frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is not None:
        if frame.empty:
            raise ValueError(f"task '{task.name}': the table has no rows")
        parts = [frame.assign(_file="<table>", _row=np.arange(len(frame)) + 2)]
    else:
        if not task.data_files:
            raise ValueError(f"task '{task.name}': no data_files given")
        parts = []
        for name in task.data_files:
            path = Path(name)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            part = read_table(path)
            parts.append(part.assign(_file=path.name, _row=np.arange(len(part)) + 2))
    combined = pd.concat(parts, ignore_index=True)
    needed = [task.composition_column, task.data_column] + ([task.t_column] if task.t_column else [])
    for column in needed:
        if column not in combined.columns:
            available = ", ".join(str(c) for c in combined.columns if not str(c).startswith("_"))
            raise ValueError(f"task '{task.name}': column '{column}' not found (columns: {available})")
    return combined


def _class_indices(task: TaskSpec, labels: pd.Series) -> tuple[np.ndarray, list[str], list[str | None]]:
    """Map labels to class indices; returns (indices with -1 for bad, classes, per-row error)."""
    raw = labels.tolist()
    classes = task.classes
    if classes is None:
        present = sorted({str(v) for v in raw if not pd.isna(v)}, key=lambda s: (not s.isdigit(), s))
        if len(present) < 2:
            raise ValueError(f"task '{task.name}': a classification task needs at least 2 classes in its data")
        classes = present
    lookup = {name: i for i, name in enumerate(classes)}
    indices = np.full(len(raw), -1, dtype=np.int64)
    errors: list[str | None] = [None] * len(raw)
    for i, value in enumerate(raw):
        if pd.isna(value):
            continue
        text = str(value).strip()
        if text in lookup:
            indices[i] = lookup[text]
        elif _is_index(value) and 0 <= int(float(text)) < len(classes):
            indices[i] = int(float(text))
        else:
            errors[i] = f"unknown class {value!r} (classes: {', '.join(classes)})"
    return indices, classes, errors


def load_task_table(
    task: TaskSpec, *, base_dir: str | Path | None = None, frame: pd.DataFrame | None = None
) -> TaskTable:
    """Load a task's data: parse compositions, read targets, dedupe by canonical key.

    Rows with a missing target are left out (the joined table masks them); rows with a bad formula or an
    unreadable target are reported in ``bad_rows`` with file, line and reason, never failing the task.
    ``frame`` replaces ``data_files`` (e.g. a table uploaded in the workbench).
    """
    base = Path(base_dir) if base_dir is not None else None
    data = _gather_frames(task, base, frame)
    bad: list[dict[str, object]] = []

    target = data[task.data_column]
    has_target = ~target.isna()
    if task.t_column:
        has_target &= ~data[task.t_column].isna()
    data = data[has_target.to_numpy()].reset_index(drop=True)

    parsed = parse_many(data[task.composition_column].tolist())
    for _, row in parsed.bad.iterrows():
        source = data.iloc[int(row["row"])]
        bad.append(
            {
                "file": source["_file"],
                "row": int(source["_row"]),
                "input": row["input"],
                "reason": row["reason"],
            }
        )
    data = data.iloc[parsed.rows].reset_index(drop=True)
    data["_key"] = parsed.keys

    # Plain lists: indexing a DataFrame cell by cell is ~50x slower.
    files, lines, inputs = data["_file"].tolist(), data["_row"].tolist(), data[task.composition_column].tolist()
    row_keys = data["_key"].tolist()
    t_cells = data[task.t_column].tolist() if task.t_column else []

    def report(i: int, reason: str) -> None:
        bad.append({"file": files[i], "row": int(lines[i]), "input": inputs[i], "reason": reason})

    classes: list[str] | None = None
    good = np.ones(len(data), dtype=bool)
    parsed_values: list[object] = [None] * len(data)
    target = data[task.data_column]
    if task.type is TaskType.CLASSIFICATION:
        indices, classes, errors = _class_indices(task, target)
        for i, error in enumerate(errors):
            if error is not None:
                good[i] = False
                report(i, error)
        parsed_values = indices
    elif task.type is TaskType.REGRESSION and pd.api.types.is_numeric_dtype(target):
        numbers = target.to_numpy(dtype=np.float64)  # fast path: a plain numeric column
        for i in np.flatnonzero(~np.isfinite(numbers)):
            good[i] = False
            report(int(i), f"target is not a finite number: {numbers[i]!r}")
        parsed_values = numbers.reshape(-1, 1)  # one array, not an object per row
    else:
        for i, value in enumerate(target.tolist()):
            try:
                array = _as_float_array(value)
                if task.t_column:
                    t_array = _as_float_array(t_cells[i])
                    if t_array.shape != array.shape:
                        raise ValueError(f"{len(t_array)} t values for {len(array)} target values")
                    array = np.stack([t_array, array])
                if not np.all(np.isfinite(array)) or array.size == 0:
                    raise ValueError(f"target is not a finite number: {value!r}")
                parsed_values[i] = array
            except ValueError as error:
                good[i] = False
                report(i, str(error))

    split_column = task.split_column if task.split_column in data.columns else None
    split_cells = data[split_column].tolist() if split_column else []
    keys: list[str] = []
    values: list[object] = []
    splits: list[str | None] = []
    n_duplicates = 0
    first_row: dict[str, int] = {}
    if task.type is TaskType.KERNEL_REGRESSION:
        # Long format (one row per point) and list cells both become one curve per composition.
        curves: dict[str, list[np.ndarray]] = {}
        curve_split: dict[str, str | None] = {}
        for i in np.flatnonzero(good):
            key = row_keys[i]
            first_row.setdefault(key, int(i))
            curves.setdefault(key, []).append(parsed_values[i])  # type: ignore[arg-type]
            label = _split_label(split_cells[i]) if split_column else None
            curve_split[key] = curve_split.get(key) or label
        t_list: list[np.ndarray] = []
        for key, pieces in curves.items():
            stacked = np.concatenate(pieces, axis=1)
            order = np.argsort(stacked[0], kind="stable")
            keys.append(key)
            t_list.append(stacked[0][order])
            values.append(stacked[1][order])
            splits.append(curve_split[key])
        result_values: np.ndarray | list[np.ndarray] = values  # type: ignore[assignment]
        result_t: list[np.ndarray] | None = t_list
    else:
        # first occurrence of each key among the good rows, in row order (no per-row Python objects)
        good_rows = np.flatnonzero(good)
        first = good_rows[~pd.Series(row_keys, dtype=object).iloc[good_rows].duplicated().to_numpy()]
        n_duplicates = len(good_rows) - len(first)
        keys = [row_keys[i] for i in first]
        splits = [_split_label(split_cells[i]) for i in first] if split_column else [None] * len(first)
        if task.type is TaskType.CLASSIFICATION:
            result_values = np.asarray(parsed_values, dtype=np.int64)[first]
        elif isinstance(parsed_values, np.ndarray):
            result_values = parsed_values[first, 0]
        else:
            values = [np.asarray(parsed_values[i]) for i in first]
            lengths = {v.size for v in values}
            if len(lengths) > 1:
                raise ValueError(f"task '{task.name}': vector targets have different lengths {sorted(lengths)}")
            stacked = np.stack(values) if values else np.zeros((0, 1))
            result_values = stacked[:, 0] if stacked.shape[1] == 1 else stacked
        result_t = None
        if n_duplicates:
            warnings.warn(
                f"task '{task.name}': {n_duplicates} duplicate composition(s) kept first occurrence",
                stacklevel=2,
            )

    bad_frame = pd.DataFrame(bad, columns=["file", "row", "input", "reason"])
    if len(bad_frame):
        warnings.warn(f"task '{task.name}': skipped {len(bad_frame)} bad row(s); see bad_rows", stacklevel=2)
    if not keys:
        raise ValueError(f"task '{task.name}': no usable rows (all {len(bad_frame)} rows were bad or empty)")
    return TaskTable(
        task=task,
        keys=keys,
        weights=parsed.weights[[first_row[k] for k in keys] if first_row else first],
        values=result_values,
        t=result_t,
        split=splits,
        classes=classes,
        bad_rows=bad_frame,
        n_duplicates=n_duplicates,
    )


def _is_index(value: object) -> bool:
    """Whole numbers (``2``, ``2.0``, ``"2"``) are class indices."""
    try:
        number = float(str(value))
    except ValueError:
        return False
    return number.is_integer()


def _split_label(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return SPLIT_LABELS.get(str(value).strip().lower())
