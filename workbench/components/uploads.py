"""Reading tables users upload in the browser (CSV bytes), guessing their composition column, and writing
uploaded tasks' tables to the workspace for a training run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fm_engine.compositions import COMPOSITION_COLUMN_NAMES
from fm_engine.data.csv_format import CsvFormat, read_csv_data
from fm_engine.safe_io import atomic_write_bytes
from workbench.components.train_form import safe_file_name

EMPTY = "The file is empty: upload a CSV with a header row and one composition per row."


SOURCE = "upload"  # the name the engine's messages start with; cut off, the page names the file itself


def read_upload(data: bytes) -> tuple[pd.DataFrame | None, str, CsvFormat | None]:
    """Read an uploaded CSV whatever its delimiter, decimal mark and encoding (``fm_engine.data.csv_format``);
    returns (table, "", how it was read) or (None, a message saying what is wrong, None)."""
    if not data or not data.strip():
        return None, EMPTY, None
    try:
        frame, found = read_csv_data(data, source=SOURCE)
    except ValueError as error:
        message = str(error).removeprefix(f"{SOURCE}: ")
        return None, message[:1].upper() + message[1:], None
    return frame, "", found


def read_csv_bytes(data: bytes) -> tuple[pd.DataFrame | None, str]:
    """Read an uploaded CSV; returns (table, "") or (None, a message saying what is wrong)."""
    frame, message, _ = read_upload(data)
    return frame, message


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
