"""The pretraining corpus: one sparse multi-task table of compositions (THE CORPUS CONTRACT).

A corpus is a folder:

* ``corpus.parquet``: columns ``composition`` (canonical key, unique), ``formula``, ``split``
  (train / val / test) and one float64 column per task (NaN = no label; classification: class index);
* ``tasks.json``: ``{"tasks": [{name, type, unit, description, classes, source}], "rules": [...],
  "counts": {...}}``;
* ``manifest.json``: how it was built;
* ``descriptors/<spec-key>.npy``: the descriptor matrix of one descriptor spec (float32, rows aligned with
  the table), and ``descriptors/weights.npy`` (atomic fractions, float64), built on first use block by
  block and then memory-mapped, so a second run starts in seconds.

This module is the minimal reader/writer the ``fm pretrain`` part needs; the corpus builder implements the
same names (``load_corpus``, ``write_corpus``, ``default_corpus_dir``, ``Corpus``, ``CorpusTask``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fm_engine.compositions import parse_many
from fm_engine.descriptors import Descriptor, DescriptorSpec
from fm_engine.elements import n_elements
from fm_engine.safe_io import atomic_path, atomic_write_json
from fm_engine.tasks import TaskSpec, TaskType

CORPUS_FILE = "corpus.parquet"
TASKS_FILE = "tasks.json"
MANIFEST_FILE = "manifest.json"
DESCRIPTOR_DIR = "descriptors"
WEIGHTS_KEY = "weights"
FIXED_COLUMNS = ("composition", "formula", "split")
SPLITS = ("train", "val", "test")
BLOCK_ROWS = 16384  # rows per block when the cached matrices are built


class CorpusError(ValueError):
    """A corpus folder that does not follow the contract (the message names the file and what was expected)."""


@dataclass
class CorpusTask:
    """One task (column) of the corpus: ``type`` regression or classification, ``classes`` the class names
    of a classification task (its column holds their indices), ``source`` the provenance mapping (dataset,
    file, package, version, license, citation)."""

    name: str
    type: str = "regression"
    unit: str = ""
    description: str = ""
    classes: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "unit": self.unit, "description": self.description,
                "classes": self.classes, "source": dict(self.source)}  # fmt: skip


@dataclass
class Corpus:
    """A loaded corpus: ``frame`` (the table), ``tasks`` (in ``tasks.json`` order)."""

    path: Path
    frame: pd.DataFrame
    tasks: list[CorpusTask]
    rules: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def task_specs(self) -> list[TaskSpec]:
        """One :class:`TaskSpec` per corpus task (data file: the corpus table, its own column)."""
        return [task_spec(self.path, task) for task in self.tasks]

    def weights_matrix(self) -> np.ndarray:
        """(N, 94) atomic fractions of the rows (float64), memory-mapped from ``descriptors/weights.npy``
        (built on first use from the composition keys)."""
        path = self.path / DESCRIPTOR_DIR / f"{WEIGHTS_KEY}.npy"
        if not _cached(path, len(self.frame)):
            keys = self.frame["composition"].tolist()

            def fill(out: np.ndarray) -> None:
                for start in range(0, len(keys), BLOCK_ROWS):
                    parsed = parse_many(keys[start : start + BLOCK_ROWS])
                    if parsed.n_bad:
                        row = parsed.bad.iloc[0]
                        raise CorpusError(
                            f"{self.path / CORPUS_FILE}: row {start + int(row['row'])}: composition "
                            f"{row['input']!r} is not a composition ({row['reason']})"
                        )
                    out[start : start + len(parsed.keys)] = parsed.weights

            _build(path, (len(keys), n_elements()), np.float64, fill)
        return np.load(path, mmap_mode="r")

    def descriptor_matrix(self, spec: DescriptorSpec) -> np.ndarray:
        """(N, D) float32 descriptor rows for ``spec``, memory-mapped from ``descriptors/<spec-key>.npy``
        (built on first use, block by block, from :meth:`weights_matrix`)."""
        descriptor = Descriptor(spec)
        path = self.path / DESCRIPTOR_DIR / f"{spec_key(spec)}.npy"
        if not _cached(path, len(self.frame)):
            weights = self.weights_matrix()

            def fill(out: np.ndarray) -> None:
                for start in range(0, len(weights), BLOCK_ROWS):
                    out[start : start + BLOCK_ROWS] = descriptor.transform(weights[start : start + BLOCK_ROWS])

            _build(path, (len(weights), descriptor.dim), np.float32, fill)
        return np.load(path, mmap_mode="r")


def spec_key(spec: DescriptorSpec) -> str:
    """File name stem of a descriptor spec's cached matrix: its kind and a hash of the whole spec."""
    return f"{spec.kind}-{hashlib.sha256(spec.to_json().encode()).hexdigest()[:16]}"


def _cached(path: Path, n_rows: int) -> bool:
    if not path.is_file():
        return False
    try:
        return np.load(path, mmap_mode="r").shape[0] == n_rows
    except (ValueError, OSError):
        return False


def _build(path: Path, shape: tuple[int, int], dtype: type, fill: Any) -> None:
    """Write an ``.npy`` matrix block by block through a memory map, atomically (temp file, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(out)
        out.flush()
        del out


def task_spec(path: Path, task: CorpusTask) -> TaskSpec:
    """The :class:`TaskSpec` of a corpus task (data file: ``<path>/corpus.parquet``, column ``task.name``)."""
    return TaskSpec(
        name=task.name,
        type=TaskType.parse(task.type),
        data_files=[str(Path(path).resolve() / CORPUS_FILE)],
        data_column=task.name,
        composition_column="composition",
        unit=task.unit,
        classes=task.classes,
        description=task.description,
    )


def default_corpus_dir() -> Path:
    """``<workspace>/corpus`` (the workspace: :func:`fm_engine.workspace.workspace_dir`)."""
    from fm_engine.workspace import workspace_dir

    return workspace_dir() / "corpus"


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CorpusError(f"{path.parent}: not a corpus folder (no {path.name}); build one with `make foundation`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorpusError(f"{path}: not readable JSON ({error})") from None


def read_tasks(path: str | Path) -> tuple[list[CorpusTask], dict[str, Any]]:
    """The tasks of a corpus folder's ``tasks.json`` (checked) and the whole file's mapping."""
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path}: no such corpus folder (expected {CORPUS_FILE}, {TASKS_FILE}, {MANIFEST_FILE})")
    data = _read_json(path / TASKS_FILE)
    entries = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CorpusError(f"{path / TASKS_FILE}: expected {{'tasks': [...]}} with at least one task")
    tasks = []
    for index, entry in enumerate(entries):
        where = f"{path / TASKS_FILE}: tasks[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise CorpusError(f"{where}: expected a mapping with a task name")
        kind = entry.get("type", "regression")
        if kind not in ("regression", "classification"):
            raise CorpusError(f"{where}: type must be regression or classification, got {kind!r}")
        classes = entry.get("classes")
        if kind == "classification" and (not isinstance(classes, list) or len(classes) < 2):
            raise CorpusError(f"{where}: a classification task needs a list of >= 2 classes")
        tasks.append(
            CorpusTask(
                name=entry["name"],
                type=kind,
                unit=str(entry.get("unit") or ""),
                description=str(entry.get("description") or ""),
                classes=[str(c) for c in classes] if kind == "classification" else None,
                source=dict(entry.get("source") or {}),
            )  # fmt: skip
        )
    names = [t.name for t in tasks]
    clashes = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(FIXED_COLUMNS)))
    if clashes:
        raise CorpusError(f"{path / TASKS_FILE}: task names repeated or reserved: {', '.join(clashes)}")
    return tasks, data


def check_corpus(path: str | Path) -> list[CorpusTask]:
    """The cheap checks of a corpus folder, before any work (no table read): ``tasks.json``, ``manifest.json``,
    and ``corpus.parquet``'s columns. Returns the tasks; a problem raises one :class:`CorpusError` naming it."""
    import pyarrow.parquet as pq

    path = Path(path)
    tasks, _ = read_tasks(path)
    _read_json(path / MANIFEST_FILE)
    table = path / CORPUS_FILE
    if not table.is_file():
        raise CorpusError(f"{path}: not a corpus folder (no {CORPUS_FILE})")
    try:
        columns = set(pq.read_schema(table).names)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise CorpusError(f"{table}: not a readable parquet table ({type(error).__name__}: {error})") from None
    missing = [c for c in (*FIXED_COLUMNS, *(t.name for t in tasks)) if c not in columns]
    if missing:
        raise CorpusError(f"{table}: missing column(s) {', '.join(missing)} (named in {TASKS_FILE} or the contract)")
    return tasks


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Read and check a corpus folder (default :func:`default_corpus_dir`); a folder that does not follow the
    contract raises one :class:`CorpusError` naming the file and what is missing."""
    path = Path(path) if path is not None else default_corpus_dir()
    tasks = check_corpus(path)
    data = _read_json(path / TASKS_FILE)
    manifest = _read_json(path / MANIFEST_FILE)
    table = path / CORPUS_FILE
    try:
        frame = pd.read_parquet(table)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise CorpusError(f"{table}: not a readable parquet table ({type(error).__name__}: {error})") from None
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split.to_numpy())[0])
        raise CorpusError(f"{table}: row {row}: split {frame['split'].iloc[row]!r} (expected train, val or test)")
    if frame["composition"].duplicated().any():
        row = int(np.flatnonzero(frame["composition"].duplicated().to_numpy())[0])
        raise CorpusError(f"{table}: row {row}: composition {frame['composition'].iloc[row]!r} is repeated")
    for task in tasks:
        values = frame[task.name].to_numpy(dtype=np.float64)
        if task.classes is not None:
            known = np.isnan(values) | np.isin(values, np.arange(len(task.classes)))
            if not known.all():
                row = int(np.flatnonzero(~known)[0])
                raise CorpusError(
                    f"{table}: row {row}: task '{task.name}' holds {values[row]!r} (expected a class index "
                    f"0..{len(task.classes) - 1} or NaN)"
                )
    return Corpus(
        path=path,
        frame=frame,
        tasks=tasks,
        rules=list(data.get("rules") or []),
        counts=dict(data.get("counts") or {}),
        manifest=manifest if isinstance(manifest, dict) else {},
    )


def write_corpus(
    path: str | Path,
    frame: pd.DataFrame,
    tasks: Sequence[CorpusTask],
    *,
    manifest: Mapping[str, Any],
    rules: Sequence[str] = (),
    counts: Mapping[str, Any] | None = None,
) -> Corpus:
    """Write a corpus folder (``corpus.parquet``, ``tasks.json``, ``manifest.json``; stale descriptor caches
    removed) and return it loaded."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    columns = [*FIXED_COLUMNS, *(t.name for t in tasks)]
    table = frame[columns].reset_index(drop=True).copy()
    for task in tasks:
        table[task.name] = table[task.name].astype(np.float64)
    with atomic_path(path / CORPUS_FILE) as tmp:
        table.to_parquet(tmp, index=False)
    counts = (
        dict(counts)
        if counts is not None
        else {"compositions": len(table)} | {t.name: int(table[t.name].notna().sum()) for t in tasks}
    )
    atomic_write_json(path / TASKS_FILE, {"tasks": [t.to_dict() for t in tasks], "rules": list(rules),
                                          "counts": counts}, sort_keys=False)  # fmt: skip
    atomic_write_json(path / MANIFEST_FILE, {"n_compositions": len(table)} | dict(manifest), sort_keys=False)
    cache = path / DESCRIPTOR_DIR
    if cache.is_dir():
        for stale in cache.glob("*.npy"):
            os.unlink(stale)
    return load_corpus(path)
