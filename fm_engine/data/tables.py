"""Reading one task's data file(s) into a table keyed by canonical composition."""

from __future__ import annotations

import ast
import gzip
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fm_engine.compositions import parse_many
from fm_engine.data.csv_format import MISSING_MARKERS, read_csv_data  # noqa: F401 - MISSING_MARKERS: its old home
from fm_engine.tasks import TaskSpec, TaskType

SPLIT_LABELS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}
SPLIT_LABELS |= {"test": "test", "testing": "test"}

MAX_MAGNITUDE = 1e18
"""Largest accepted absolute target or ``t`` value. Targets are stored as 32-bit floats and squared in
losses and metrics (float32 overflows above 3.4e38, so above ~1.8e19 before squaring); a target like
1e300 would make every prediction ``inf``. Rescale the unit (GPa instead of Pa) or take a log."""


PICKLE_SUFFIXES = (".pkl", ".pickle", ".pd", ".pd.xz", ".pkl.xz", ".pd.z", ".pkl.gz", ".pkl.bz2", ".pkl.zip")
PICKLE_OPT_IN = "--allow-pickle on the command line, or data.allow_pickle: true in the config you run"


def is_pickle_file(path: str | Path) -> bool:
    """True for the pickled-table file names ``read_table`` knows (``.pkl``, ``.pd.xz``, ...)."""
    return "".join(Path(path).suffixes).lower().endswith(PICKLE_SUFFIXES)


def refuse_pickle(path: str | Path) -> ValueError:
    """The one-line refusal for a pickled table read without the opt-in (names the file and the opt-in)."""
    return ValueError(
        f"{path}: a pickled table can run code when it is read, so it is read only with an explicit opt-in "
        f"({PICKLE_OPT_IN}) and never when named in a checkpoint, a run directory, fm predict --input or the "
        "workbench; save it as .csv or .parquet instead"
    )


def read_table(path: str | Path, *, allow_pickle: bool = False) -> pd.DataFrame:
    """Read a csv / parquet table (or a pickled one, see below); every failure becomes a ``ValueError``
    naming the file.

    ``allow_pickle``: read ``.pkl`` / ``.pickle`` / ``.pd`` / ``.pd.xz`` / ... files. Unpickling runs whatever
    code the file holds, so it must be exactly ``True``, and only callers acting on the user's own in-person
    opt-in pass it (``--allow-pickle``, or ``data.allow_pickle`` of a config the user runs directly); never
    for paths recorded in a checkpoint or run directory, ``fm predict --input`` or workbench uploads.
    The refusal happens before the file is opened.
    """
    path = Path(path)
    pickled = is_pickle_file(path)
    if pickled and allow_pickle is not True:
        raise refuse_pickle(path)
    if not path.exists():
        raise ValueError(f"data file not found: {path}")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith((".csv", ".csv.gz", ".txt")):
            data = gzip.decompress(path.read_bytes()) if suffixes.endswith(".gz") else path.read_bytes()
            frame, _ = read_csv_data(data, source=path.name, guess_encoding=False)
        elif suffixes.endswith(".parquet"):
            frame = pd.read_parquet(path)
        elif pickled:
            frame = pd.read_pickle(path)  # noqa: S301 - only with the user's explicit opt-in (checked above)
        else:
            raise ValueError(f"{path.name}: unsupported file type (use .csv or .parquet; .pkl needs {PICKLE_OPT_IN})")
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        raise ValueError(f"{path}: not UTF-8 text (cannot decode byte 0x{byte}); save it as UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path.name}: the file is empty") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path.name}: malformed CSV ({str(error).strip()})") from None
    except ValueError as error:
        if path.name in str(error):
            raise
        raise ValueError(f"{path.name}: cannot be read ({error})") from None
    except Exception as error:
        raise ValueError(f"{path.name}: cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{path.name}: does not hold a table")
    if frame.empty:
        raise ValueError(f"{path.name}: the table has no rows")
    return frame


def non_numeric_cells(values: pd.Series, *, limit: int = 1000) -> tuple[int, list[int]]:
    """Among the first ``limit`` non-missing cells of ``values``: (cells checked, positions in ``values`` of those
    that are not numbers). A list cell of numbers (``[1, 2]``) counts as a number."""
    present = np.flatnonzero(~values.isna().to_numpy())[:limit]
    if pd.api.types.is_numeric_dtype(values):
        return len(present), []
    cells = values.tolist()
    bad = []
    for i in present:
        try:
            _as_float_array(cells[i])
        except ValueError:
            bad.append(int(i))
    return len(present), bad


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


def _as_float_array(value: object, what: str = "target") -> np.ndarray:
    """A cell as a flat float64 array; ``ValueError`` naming ``what`` unless every entry is a finite number
    within :data:`MAX_MAGNITUDE` (``inf``, ``nan`` and overflowing values are refused)."""
    literal = _literal(value)
    try:
        array = np.asarray(literal, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if array.size == 0:
        raise ValueError(f"{what} is empty: {value!r}")
    _check_magnitude(array, value, what)
    return array


def _show(value: object) -> str:
    """A cell as the user wrote it (numbers read by pandas in short form: ``inf``, ``1e+300``)."""
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


def _check_magnitude(array: np.ndarray, value: object, what: str) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} is not a finite number: {_show(value)}")
    if np.any(np.abs(array) > MAX_MAGNITUDE):
        raise ValueError(
            f"{what} {_show(value)} is beyond the supported magnitude {MAX_MAGNITUDE:g} "
            "(rescale the unit or take a log)"
        )


def _majority_length(lengths: list[int]) -> int:
    """The most common number of values per target cell (ties: the first seen)."""
    counts: dict[int, int] = {}
    for length in lengths:
        counts[length] = counts.get(length, 0) + 1
    return max(counts, key=lambda length: counts[length])


UNUSED_COLUMNS = ["file", "row", "input", "reason"]


class NoUsableRowsError(ValueError):
    """No row of a task's data can be used; ``unused_rows`` lists each row with its reason (as
    :meth:`TaskTable.unused_rows`)."""

    def __init__(self, message: str, unused_rows: pd.DataFrame) -> None:
        super().__init__(message)
        self.unused_rows = unused_rows


MISSING_TARGET = "missing target (empty cell or a no-value marker such as n/a, NA, -)"


@dataclass
class TaskTable:
    """One task's labelled compositions, unique by canonical key.

    ``values``: regression (n,) or (n, d) float64 in the file's unit; classification (n,) int64 class
    indices; kernel regression: a list of (n_points,) arrays with matching ``t`` arrays, sorted by ``t``.
    ``split``: per-key label from the file's split column (``None`` where absent).
    ``bad_rows``: rows that were skipped, with ``file``, ``row`` (1-based row in the file, header = 1),
    ``input`` and ``reason``. ``missing_rows`` (no target value) and ``duplicate_rows`` (a composition seen in an
    earlier row, whose value was kept) are not used either; :meth:`unused_rows` lists all three.
    """

    task: TaskSpec
    keys: list[str]
    weights: np.ndarray
    values: np.ndarray | list[np.ndarray]
    t: list[np.ndarray] | None = None
    split: list[str | None] = field(default_factory=list)
    classes: list[str] | None = None
    bad_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNUSED_COLUMNS))
    n_duplicates: int = 0
    missing_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNUSED_COLUMNS))
    duplicate_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNUSED_COLUMNS))

    def __len__(self) -> int:
        return len(self.keys)

    def unused_rows(self) -> pd.DataFrame:
        """Every row of the file(s) that is not used, ordered by file and row: bad rows, rows without a target
        and duplicates (columns ``file``, ``row``, ``input``, ``reason``)."""
        parts = [part for part in (self.bad_rows, self.missing_rows, self.duplicate_rows) if len(part)]
        if not parts:
            return pd.DataFrame(columns=UNUSED_COLUMNS)
        return pd.concat(parts, ignore_index=True).sort_values(["file", "row"], kind="stable").reset_index(drop=True)


def _gather_frames(
    task: TaskSpec, base_dir: Path | None, frame: pd.DataFrame | None, *, allow_pickle: bool = False
) -> pd.DataFrame:
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
            part = read_table(path, allow_pickle=allow_pickle)
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
    task: TaskSpec,
    *,
    base_dir: str | Path | None = None,
    frame: pd.DataFrame | None = None,
    allow_pickle: bool = False,
) -> TaskTable:
    """Load a task's data: parse compositions, read targets, dedupe by canonical key.

    Rows with a missing target are left out (the joined table masks them); rows with a bad formula or an
    unreadable target are reported in ``bad_rows`` with file, line and reason, never failing the task.
    ``frame`` replaces ``data_files`` (e.g. a table uploaded in the workbench). ``allow_pickle``: see
    :func:`read_table` (off unless the user opted in in person).
    """
    base = Path(base_dir) if base_dir is not None else None
    data = _gather_frames(task, base, frame, allow_pickle=allow_pickle)
    bad: list[dict[str, object]] = []

    target = data[task.data_column]
    has_target = ~target.isna()
    missing = [(MISSING_TARGET, ~has_target)]
    if task.t_column:
        missing.append((f"missing t value (column '{task.t_column}')", has_target & data[task.t_column].isna()))
        has_target &= ~data[task.t_column].isna()
    missing_rows = pd.DataFrame(
        [
            {"file": f, "row": int(r), "input": c, "reason": reason}
            for reason, mask in missing
            for f, r, c in data.loc[mask.to_numpy(), ["_file", "_row", task.composition_column]].itertuples(index=False)
        ],
        columns=UNUSED_COLUMNS,
    )
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
        for i in np.flatnonzero(~(np.abs(numbers) <= MAX_MAGNITUDE)):
            good[i] = False
            try:
                _check_magnitude(numbers[i : i + 1], float(numbers[i]), "target")
            except ValueError as error:
                report(int(i), str(error))
        parsed_values = numbers.reshape(-1, 1)  # one array, not an object per row
    else:
        for i, value in enumerate(target.tolist()):
            try:
                array = _as_float_array(value)
                if task.t_column:
                    t_array = _as_float_array(t_cells[i], "t")
                    if t_array.shape != array.shape:
                        raise ValueError(f"{len(t_array)} t values for {len(array)} target values")
                    array = np.stack([t_array, array])
                parsed_values[i] = array
            except ValueError as error:
                good[i] = False
                report(i, str(error))
        if task.type is TaskType.REGRESSION and good.any():
            # One list in a column of single numbers (or a short list among vectors) is a bad row, not a failed task.
            rows = np.flatnonzero(good)
            expected = _majority_length([np.asarray(parsed_values[i]).size for i in rows])
            for i in rows:
                size = np.asarray(parsed_values[i]).size
                if size != expected:
                    good[i] = False
                    report(int(i), f"target has {size} values, expected {expected} like most rows of the column")

    split_column = task.split_column if task.split_column in data.columns else None
    split_cells = data[split_column].tolist() if split_column else []
    for i in np.flatnonzero(good) if split_column else []:
        if not _is_missing(split_cells[i]) and _split_label(split_cells[i]) is None:
            good[i] = False  # a typo such as "tset" must not put the row in a random split
            report(
                int(i),
                f"unknown split label {split_cells[i]!r} in column '{split_column}' "
                "(expected train, val or test, or an empty cell)",
            )
    keys: list[str] = []
    values: list[object] = []
    splits: list[str | None] = []
    n_duplicates = 0
    duplicate_rows = pd.DataFrame(columns=UNUSED_COLUMNS)
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
        repeated = pd.Series(row_keys, dtype=object).iloc[good_rows].duplicated().to_numpy()
        first = good_rows[~repeated]
        n_duplicates = len(good_rows) - len(first)
        kept = {row_keys[i]: int(i) for i in first}
        duplicate_rows = pd.DataFrame(
            [
                {"file": files[i], "row": int(lines[i]), "input": inputs[i], "reason": _duplicate_reason(
                    row_keys[i], files[kept[row_keys[i]]], int(lines[kept[row_keys[i]]]), same_file=files[i])}
                for i in good_rows[repeated]
            ],
            columns=UNUSED_COLUMNS,
        )  # fmt: skip
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

    bad_frame = pd.DataFrame(bad, columns=UNUSED_COLUMNS)
    if len(bad_frame):
        warnings.warn(f"task '{task.name}': skipped {len(bad_frame)} bad row(s); see bad_rows", stacklevel=2)
    if not keys:
        unused = pd.concat([part for part in (bad_frame, missing_rows) if len(part)] or [bad_frame], ignore_index=True)
        raise NoUsableRowsError(
            f"task '{task.name}': no usable rows ({len(bad_frame)} bad, {len(missing_rows)} without a target value)",
            unused.sort_values(["file", "row"], kind="stable").reset_index(drop=True),
        )
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
        missing_rows=missing_rows,
        duplicate_rows=duplicate_rows,
    )


def _duplicate_reason(key: str, kept_file: str, kept_row: int, *, same_file: str) -> str:
    where = f"row {kept_row}" if kept_file == same_file else f"row {kept_row} of {kept_file}"
    return f"duplicate composition ({key}): the value of {where} is used"


def _is_index(value: object) -> bool:
    """Whole numbers (``2``, ``2.0``, ``"2"``) are class indices."""
    try:
        number = float(str(value))
    except ValueError:
        return False
    return number.is_integer()


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _split_label(value: object) -> str | None:
    if _is_missing(value):
        return None
    return SPLIT_LABELS.get(str(value).strip().lower())
