"""Reading tables users upload in the browser (CSV bytes), guessing their composition column, and writing
uploaded tasks' tables to the workspace for a training run."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fm_engine.compositions import COMPOSITION_COLUMN_NAMES
from fm_engine.data.tables import MISSING_MARKERS
from fm_engine.safe_io import atomic_write_bytes
from workbench.components.train_form import safe_file_name

EMPTY = "The file is empty: upload a CSV with a header row and one composition per row."


def read_csv_bytes(data: bytes) -> tuple[pd.DataFrame | None, str]:
    """Read an uploaded CSV; returns (table, "") or (None, a message saying what is wrong)."""
    if not data or not data.strip():
        return None, EMPTY
    try:
        frame = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=list(MISSING_MARKERS))
    except pd.errors.EmptyDataError:
        return None, EMPTY
    except pd.errors.ParserError as error:
        return None, f"Malformed CSV: {str(error).strip()}"
    except (UnicodeDecodeError, ValueError) as error:
        return None, f"The file cannot be read as CSV: {error}"
    if frame.empty:
        return None, "The CSV has a header but no rows."
    frame.columns = [str(c) for c in frame.columns]
    return frame, ""


def guess_column(
    columns: list[str], guesses: Iterable[str] = COMPOSITION_COLUMN_NAMES, *, exclude: Iterable[str] = ()
) -> int:
    """Index of the first column named like one of ``guesses`` (case-insensitive), else the first allowed one."""
    excluded = set(exclude)
    lowered = [str(c).strip().lower() for c in columns]
    for guess in guesses:
        if guess in lowered and columns[lowered.index(guess)] not in excluded:
            return lowered.index(guess)
    return next((i for i, c in enumerate(columns) if c not in excluded), 0)


def upload_file(folder: Path, name: str, data: bytes) -> Path:
    """``<folder>/<safe name>-<digest>.csv``: the digest covers the exact task name and the table's bytes, so
    names that differ only in punctuation (``band gap`` / ``band-gap``) or a new table under an old name never
    share a file (a run started earlier keeps reading its own data); the same table gives the same file."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\0" + data).hexdigest()[:12]
    return folder / f"{safe_file_name(name)}-{digest}.csv"


def write_uploaded_tasks(
    folder: Path, names: Sequence[str], uploaded: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[dict[str, Any], str]]:
    """Write each chosen uploaded task's table (``uploaded[name]["frame"]``) to its own CSV in ``folder``,
    atomically; returns name -> (task spec with its name, absolute path of the file)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[dict[str, Any], str]] = {}
    for name in names:
        entry = uploaded[name]
        data = entry["frame"].to_csv(index=False).encode("utf-8")
        path = upload_file(folder, name, data).resolve()
        atomic_write_bytes(path, data)
        spec = dict(entry["spec"])
        spec.setdefault("name", name)
        files[name] = (spec, str(path))
    return files
