"""Uploaded tasks saved in the workspace, so they survive a reload, a closed tab and a new session.

Each task is a folder ``<workspace>/saved_uploads/<safe name>-<digest>/`` holding ``task.json`` (the task name,
its TaskSpec dict, the uploaded file's name and how it was read) and ``table.csv`` (the table as read: comma-
separated, decimal point, UTF-8), both written atomically. Saved uploads are only ever read as JSON and CSV, never
unpickled; a folder that cannot be read is skipped with a message naming it.

A browser session's uploaded tasks live in ``st.session_state[UPLOADED_TASKS]`` (``{name: {"spec": TaskSpec dict,
"frame": DataFrame}}``, what the Train page reads); :func:`uploaded_tasks` fills it from the workspace the first
time a session reads it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pandas as pd

from fm_engine.data.csv_format import MISSING_MARKERS
from fm_engine.safe_io import atomic_path, atomic_write_json
from fm_engine.tasks import TaskSpec
from fm_engine.workspace import workspace_dir
from workbench.components.train_form import safe_file_name

FOLDER = "saved_uploads"
TASK_FILE = "task.json"
TABLE_FILE = "table.csv"
MAX_TASK_FILE_BYTES = 1 << 20  # a task.json is a few hundred bytes; anything larger is not ours
PROBLEMS = "fm_saved_upload_problems"  # session key: messages about saved uploads that could not be read


def saved_uploads_dir() -> Path:
    return workspace_dir() / FOLDER


def upload_folder(name: str) -> Path:
    """The folder of task ``name``: its safe name plus a digest of the exact name (``band gap`` and ``band-gap``
    get different folders)."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return saved_uploads_dir() / f"{safe_file_name(name)}-{digest}"


def save_upload(name: str, spec: dict[str, Any], frame: pd.DataFrame, *, source: str = "", read_as: str = "") -> Path:
    """Write task ``name`` (its TaskSpec dict and table) to its folder, replacing an older one of the same name;
    ``source``: the uploaded file's name; ``read_as``: how it was read. The table is written before the JSON, so
    a folder with a ``task.json`` always has its table."""
    folder = upload_folder(name)
    with atomic_path(folder / TABLE_FILE) as tmp:
        frame.to_csv(tmp, index=False)
    atomic_write_json(folder / TASK_FILE, {"name": name, "spec": spec, "source": source, "read_as": read_as})
    return folder


def remove_upload(name: str) -> None:
    """Delete the saved folder of task ``name`` (nothing if there is none)."""
    shutil.rmtree(upload_folder(name), ignore_errors=True)


def _read_folder(folder: Path) -> tuple[str, dict[str, Any]]:
    """(task name, {"spec", "frame", "source", "read_as"}) of one saved folder; ``ValueError`` when unreadable."""
    task_file = folder / TASK_FILE
    if not task_file.is_file():
        raise ValueError(f"no {TASK_FILE}")
    if task_file.stat().st_size > MAX_TASK_FILE_BYTES:
        raise ValueError(f"{TASK_FILE} is larger than {MAX_TASK_FILE_BYTES} bytes")
    try:
        record = json.loads(task_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{TASK_FILE} is not valid JSON ({error})") from None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("name"), str)
        or not isinstance(record.get("spec"), dict)
    ):
        raise ValueError(f"{TASK_FILE} does not hold a task name and spec")
    spec = TaskSpec.from_dict(record["spec"]).to_dict()  # checks every field (ValueError / TypeError)
    try:  # written by save_upload: comma-separated UTF-8, read as such (CSV only, never unpickled)
        frame = pd.read_csv(folder / TABLE_FILE, keep_default_na=False, na_values=list(MISSING_MARKERS))
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{TABLE_FILE} cannot be read ({type(error).__name__}: {error})") from None
    frame.columns = [str(c) for c in frame.columns]
    missing = [c for c in (spec["composition_column"], spec["data_column"]) if c not in frame.columns]
    if missing:
        raise ValueError(f"{TABLE_FILE} has no column {', '.join(repr(c) for c in missing)}")
    entry = {
        "spec": spec,
        "frame": frame,
        "source": str(record.get("source", "")),
        "read_as": str(record.get("read_as", "")),
    }
    return record["name"], entry


def load_saved_uploads() -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every saved uploaded task (name -> entry, oldest folder first) and a message per folder that could not be
    read (named, with the reason); such folders are left on disk for the user to inspect."""
    folder = saved_uploads_dir()
    if not folder.is_dir():
        return {}, []
    tasks: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for entry in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_mtime):
        try:
            name, task = _read_folder(entry)
        except (ValueError, TypeError, KeyError, OSError) as error:
            problems.append(f"The saved upload {entry} was skipped: {error}")
            continue
        tasks[name] = task
    return tasks, problems


def _mtime(path: Path) -> float:
    try:
        return (path / TASK_FILE).stat().st_mtime
    except OSError:
        return 0.0


def uploaded_tasks(store: MutableMapping[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """``store[key]``, the session's uploaded tasks; the first time a session asks (the key is absent), it is
    filled from the workspace and the folders that could not be read are put in ``store[PROBLEMS]``."""
    if key not in store:
        store[key], store[PROBLEMS] = load_saved_uploads()
    return store[key] or {}


def add_upload(store: MutableMapping[str, Any], key: str, name: str, entry: dict[str, Any]) -> bool:
    """Save task ``name`` in the workspace and put it in the session's tasks; True if it replaced one."""
    tasks = dict(uploaded_tasks(store, key))
    save_upload(name, entry["spec"], entry["frame"], source=entry.get("source", ""), read_as=entry.get("read_as", ""))
    replaced = name in tasks
    tasks[name] = entry
    store[key] = tasks
    return replaced


def drop_upload(store: MutableMapping[str, Any], key: str, name: str) -> None:
    """Remove task ``name`` from the workspace and from the session's tasks."""
    remove_upload(name)
    store[key] = {k: v for k, v in uploaded_tasks(store, key).items() if k != name}
