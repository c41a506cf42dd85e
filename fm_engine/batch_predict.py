"""``fm predict`` on files of any size: the input is read in chunks, predicted with
:func:`fm_engine.predict.predict_frame` chunk by chunk, and appended to a temporary file that replaces the
output only when every row is written (memory stays bounded by the chunk size, not the file size).

Before any work: the input must be a ``.csv`` / ``.csv.gz`` / ``.txt`` / ``.parquet`` file (pickles are
never read for predictions), the output must not be the input (also through a symlink or hard link), nor a
folder, and its folder must be writable. Input cells are copied as written (CSV cells are read as text).
The output is written by Arrow's CSV writer: text quoted, predictions in float32's shortest exact form.
Outputs whose names the input already uses get the ``pred_`` prefix (see ``predict_frame``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import pandas as pd
import torch

from fm_engine.applicability import distance_columns, training_domain
from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.compositions import ParsedBatch, parse_many
from fm_engine.output_dirs import check_writable
from fm_engine.predict import (
    IMPOSSIBLE_COLUMN,
    CompositionColumnError,
    composition_column_of,
    output_columns,
    predict_frame,
    prediction_columns,
    rename_collisions,
    resolve_t_grids,
)
from fm_engine.safe_io import atomic_path
from fm_engine.tasks import TaskType

DEFAULT_CHUNK_SIZE = 20_000
T = TypeVar("T")
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class PredictFileResult:
    """What :func:`predict_file` wrote."""

    output: Path
    n_rows: int
    n_bad: int
    error_column: str  # "error", or "pred_error" when the input has an "error" column
    renamed: dict[str, str] = field(default_factory=dict)  # output name -> prefixed column name
    beyond_tested: dict[str, tuple[int, float]] = field(default_factory=dict)  # task -> (rows, tested_up_to)
    n_impossible: int = 0  # rows with a value below its task's physical minimum (column ``below_physical_minimum``)
    seconds: float = 0.0


def input_kind(path: Path) -> str:
    """``csv`` or ``parquet`` from the file name; ``ValueError`` for anything else."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise ValueError(
        f"--input {path}: unsupported file type for predictions (use .csv, .csv.gz, .txt or .parquet; "
        "pickled files are never read for predictions)"
    )


def check_paths(input_path: str | Path, output_path: str | Path) -> tuple[Path, Path]:
    """Refuse, before any work, an input that is missing or of an unknown type and an output that is the
    input (same resolved path, symlink or hard link), a folder, or in a folder that cannot be written."""
    source, output = Path(input_path), Path(output_path)
    if not source.is_file():
        raise ValueError(f"--input {source}: file not found")
    input_kind(source)
    if output.resolve() == source.resolve() or (output.exists() and os.path.samefile(output, source)):
        raise ValueError(
            f"--output {output} is the input file {source}: write the predictions to another file "
            "(the input is never overwritten)"
        )
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; expected a file name such as predictions.csv")
    check_writable(output.parent, option="--output")  # missing folders are created when the output is written
    return source, output


def _csv_error(path: Path, error: Exception) -> ValueError:
    if isinstance(error, pd.errors.EmptyDataError):
        return ValueError(f"{path.name}: the file is empty")
    if isinstance(error, UnicodeDecodeError):
        return ValueError(f"{path.name}: not UTF-8 text ({error.reason} at byte {error.start})")
    if isinstance(error, pd.errors.ParserError):
        return ValueError(f"{path.name}: malformed CSV ({str(error).strip()})")
    return ValueError(f"{path.name}: cannot be read ({type(error).__name__}: {error})")


def read_columns(path: Path) -> list[str]:
    """The input's column names (reads only the header / schema)."""
    try:
        if input_kind(path) == "parquet":
            import pyarrow.parquet as pq

            return [str(c) for c in pq.ParquetFile(path).schema_arrow.names]
        return [str(c) for c in pd.read_csv(path, nrows=0, dtype=str).columns]
    except ValueError as error:
        if str(error).startswith("--input"):
            raise
        raise _csv_error(path, error) from None
    except Exception as error:
        raise _csv_error(path, error) from None


def count_rows(path: Path) -> int | None:
    """Rows for the progress bar: exact for parquet, the number of lines - 1 for plain CSV (quoted line
    breaks make it an estimate); None for compressed files."""
    if input_kind(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if path.name.lower().endswith(".gz"):
        return None
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without a line break
    return max(lines - 1, 0)  # minus the header


def read_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    """The input in chunks of ``chunk_size`` rows. CSV cells are text exactly as written (no number
    re-formatting, empty cells stay empty); parquet row batches keep their types."""
    if input_kind(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=chunk_size)
            for batch in batches:
                yield batch.to_pandas()
        except Exception as error:
            raise ValueError(f"{path.name}: cannot be read ({type(error).__name__}: {error})") from None
        return
    try:
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, chunksize=chunk_size)
        with reader:
            yield from reader
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as error:
        raise _csv_error(path, error) from None


class CsvWriter:
    """Appends tables to one CSV (header once) with Arrow's C++ writer. Every chunk is cast to the first
    chunk's schema, with ``float32_columns`` (the model's float32 predictions) written in float32's
    shortest exact form and all-empty columns as text, so every chunk formats a value the same way."""

    def __init__(self, handle: IO[bytes], *, float32_columns: Sequence[str]) -> None:
        self.handle = handle
        self.float32_columns = set(float32_columns)
        self._writer: Any = None
        self._schema: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._schema is None:
            fields = []
            for item in table.schema:
                kind = item.type
                if item.name in self.float32_columns:
                    kind = pa.float32()
                elif pa.types.is_null(kind):
                    kind = pa.string()
                fields.append(pa.field(item.name, kind))
            self._schema = pa.schema(fields)
            self._writer = pa_csv.CSVWriter(self.handle, self._schema)
        self._writer.write_table(table.cast(self._schema))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _parsed_chunks(
    path: Path, chunk_size: int, column: str, *, checkpoint: LoadedCheckpoint, distances: bool
) -> Iterator[tuple[pd.DataFrame, ParsedBatch, dict[str, np.ndarray] | None]]:
    """Chunks with their parsed composition column (empty or blank cells: "missing composition") and, with
    ``distances``, their distance columns (computed here, so that the search overlaps the model)."""
    for chunk in read_chunks(path, chunk_size):
        text = chunk[column].astype(object)
        parsed = parse_many(text.where(text.astype(str).str.strip() != "", None).tolist())
        found = distance_columns(checkpoint, parsed.weights, rows=parsed.rows, n_rows=len(chunk)) if distances else None
        yield chunk, parsed, found


def _prefetched(items: Iterator[T]) -> Iterator[T]:
    """``items``, with the next one produced in a background thread while the caller works on the current
    one (reading, parsing and the distance search there; the model and the writer here: numpy and torch
    release Python's lock in their loops, so the two overlap on two cores). Errors surface in order, when
    their item is reached."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fm-predict-read") as pool:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


def predict_file(
    checkpoint: LoadedCheckpoint,
    input_path: str | Path,
    output_path: str | Path,
    *,
    composition_column: str | None = None,
    t_grids: Mapping[str, Sequence[float]] | None = None,
    distances: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
) -> PredictFileResult:
    """Predict every row of a CSV / parquet file into a CSV, ``chunk_size`` rows at a time.

    Everything is checked before the first row is predicted (paths, t grids, the composition column);
    the output appears only once complete (temp file + fsync + rename), so a failure or a kill midway
    leaves no partial file and never touches the input. Output columns as :func:`predict_frame`.
    """

    if chunk_size < 1:
        raise ValueError(f"chunk size {chunk_size}: expected a positive number of rows")
    started = time.perf_counter()
    source, output = check_paths(input_path, output_path)
    grids = resolve_t_grids(checkpoint.model, t_grids)
    columns = read_columns(source)
    try:
        composition_column = composition_column_of(columns, composition_column)
    except CompositionColumnError as error:
        raise CompositionColumnError(f"{source.name}: {error}") from None
    names = rename_collisions(columns, output_columns(checkpoint, grids, distances=distances))
    threads = torch.get_num_threads()
    # One thread for the model: the reading/parsing thread uses the other core, and idle OpenMP workers
    # spinning beside busy processes cost ~3x the CPU time on a shared 2-core machine (measured).
    torch.set_num_threads(1)
    try:
        return _predict_chunks(checkpoint, source, output, names=names, grids=grids, chunk_size=chunk_size,
                               composition_column=composition_column, distances=distances, progress=progress,
                               started=started)  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _predict_chunks(
    checkpoint: LoadedCheckpoint,
    source: Path,
    output: Path,
    *,
    names: dict[str, str],
    grids: Mapping[str, Sequence[float]],
    chunk_size: int,
    composition_column: str,
    distances: bool,
    progress: bool,
    started: float,
) -> PredictFileResult:
    from tqdm import tqdm

    labelled = {name for name, task in checkpoint.model.tasks.items() if task.type is TaskType.CLASSIFICATION}
    n_rows = n_bad = n_impossible = 0
    flagged: dict[str, int] = {}
    predictions = prediction_columns(checkpoint.model, grids, spread=checkpoint.is_ensemble)
    float32_columns = [names[c] for task, cs in predictions.items() for c in cs[(task in labelled) :]]
    with (
        atomic_path(output) as tmp,
        tmp.open("wb") as handle,
        tqdm(total=count_rows(source) if progress else None, desc="predict", unit=" rows", disable=not progress) as bar,
    ):
        writer = CsvWriter(handle, float32_columns=float32_columns)
        chunks = _parsed_chunks(source, chunk_size, composition_column, checkpoint=checkpoint, distances=distances)
        for chunk, parsed, found in _prefetched(chunks):
            chunk.index = pd.RangeIndex(n_rows, n_rows + len(chunk))
            result = predict_frame(checkpoint, chunk, composition_column=composition_column, t_grids=grids,
                                   distances=distances, first_row=n_rows, parsed=parsed,
                                   distance_values=found)  # fmt: skip
            writer.write(result)
            n_rows += len(result)
            n_bad += int((result[names["error"]] != "").sum())
            n_impossible += int((result[names[IMPOSSIBLE_COLUMN]] != "").sum())
            if "extrapolated_for" in names:
                tasks = result[names["extrapolated_for"]].astype(str).str.split(", ").explode()
                for task, count in tasks[tasks != ""].value_counts().items():
                    flagged[str(task)] = flagged.get(str(task), 0) + int(count)
            bar.update(len(result))
        writer.close()
        if n_rows == 0:
            raise ValueError(f"{source.name}: the table has no rows")
    beyond = {
        task: (flagged[task], training_domain(checkpoint, task).tested_up_to)
        for task in checkpoint.model.tasks
        if task in flagged
    }
    return PredictFileResult(
        output=output,
        n_rows=n_rows,
        n_bad=n_bad,
        error_column=names["error"],
        renamed={name: column for name, column in names.items() if name != column},
        beyond_tested=beyond,
        n_impossible=n_impossible,
        seconds=time.perf_counter() - started,
    )
