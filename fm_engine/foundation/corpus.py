"""The pretraining corpus: one sparse multi-task table of DFT properties keyed by composition.

A corpus is a folder::

    corpus.parquet   composition (canonical key, unique), formula, split (train/val/test), one float64 column
                     per task (NaN = no label; classification: class indices 0..k-1 as floats)
    tasks.json       {"tasks": [...], "rules": [...], "counts": {...}}: what each column is, where it came from,
                     every cleaning rule, and how many rows each rule touched
    manifest.json    format version, source wheel + sha256, builder version, build seconds, n_compositions, ...
    descriptors/     caches made on first use: weights.npy (N, 94) float32 and <spec-key>.npy (N, dim) float32,
                     memory-mapped, rows aligned with corpus.parquet, each with a .json naming what it was made of

It is written by :func:`write_corpus` (the builder :mod:`fm_engine.foundation.build`, and tests that need a tiny
corpus) and read by :func:`load_corpus`. A bad folder raises one ``ValueError`` naming the file and key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fm_engine.config import read_json_file
from fm_engine.safe_io import TEMP_PREFIX, atomic_path, atomic_write_json, sync_folder
from fm_engine.tasks import TaskSpec

FORMAT_VERSION = 1
"""Version of the corpus folder format; :func:`load_corpus` refuses other versions."""

CORPUS_FILE = "corpus.parquet"
TASKS_FILE = "tasks.json"
MANIFEST_FILE = "manifest.json"
CACHE_DIR = "descriptors"
PRETRAIN_LOSS = "huber"  # the corpus tasks' regression loss: the shipped foundation was pretrained with it
WEIGHTS_CACHE = "weights"
BASE_COLUMNS = ("composition", "formula", "split")
SPLITS = ("train", "val", "test")
TASK_TYPES = ("regression", "classification")
SOURCE_KEYS = ("dataset", "file", "package", "version", "license", "citation")


class CorpusError(ValueError):
    """A corpus folder that does not follow the format: the message names the file and key (or column, row)."""


def default_corpus_dir() -> Path:
    """``<workspace>/corpus`` (workspace: :func:`fm_engine.workspace.workspace_dir`)."""
    from fm_engine.workspace import workspace_dir

    return workspace_dir() / "corpus"


@dataclass(frozen=True)
class TaskSource:
    """Where a task's labels come from: the dataset, the file inside the package, the package and its version,
    the data licence and the citation."""

    dataset: str
    file: str
    package: str = ""
    version: str = ""
    license: str = ""
    citation: str = ""


@dataclass(frozen=True)
class CorpusTask:
    """One corpus column: a DFT property from one source, in one unit (``unit`` empty for dimensionless or
    classification tasks)."""

    name: str
    type: str
    unit: str
    description: str
    source: TaskSource
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name in BASE_COLUMNS:
            raise CorpusError(f"corpus task name {self.name!r}: expected a name other than {', '.join(BASE_COLUMNS)}")
        if self.type not in TASK_TYPES:
            raise CorpusError(f"corpus task '{self.name}': type {self.type!r}, expected one of {', '.join(TASK_TYPES)}")
        if (self.type == "classification") != (self.classes is not None):
            raise CorpusError(f"corpus task '{self.name}': classes are given for classification tasks, and only them")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
            if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
                raise CorpusError(f"corpus task '{self.name}': classes must be >= 2 distinct names")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes) if self.classes is not None else None
        return data

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> CorpusTask:
        """Strict reading: every key present, none unknown; errors name ``where`` and the key."""
        if not isinstance(data, Mapping):
            raise CorpusError(f"{where}: expected a mapping, got {type(data).__name__}")
        expected = ("name", "type", "unit", "description", "classes", "source")
        _check_exact_keys(data, expected, where)
        source = data["source"]
        if not isinstance(source, Mapping):
            raise CorpusError(f"{where}.source: expected a mapping of {', '.join(SOURCE_KEYS)}")
        _check_exact_keys(source, SOURCE_KEYS, f"{where}.source")
        for key in ("name", "type", "unit", "description"):
            if not isinstance(data[key], str):
                raise CorpusError(f"{where}.{key}: expected text, got {data[key]!r}")
        for key in SOURCE_KEYS:
            if not isinstance(source[key], str):
                raise CorpusError(f"{where}.source.{key}: expected text, got {source[key]!r}")
        classes = data["classes"]
        if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            raise CorpusError(f"{where}.classes: expected null or a list of class names, got {classes!r}")
        try:
            return cls(
                name=data["name"],
                type=data["type"],
                unit=data["unit"],
                description=data["description"],
                source=TaskSource(**{key: source[key] for key in SOURCE_KEYS}),
                classes=tuple(classes) if classes is not None else None,
            )
        except ValueError as error:
            raise CorpusError(f"{where}: {error}") from None

    def spec(self, corpus_file: Path) -> TaskSpec:
        """A :class:`TaskSpec` reading this column (and the corpus split) from ``corpus_file``."""
        return TaskSpec(
            name=self.name,
            type=self.type,
            data_files=[str(corpus_file)],
            data_column=self.name,
            composition_column="composition",
            split_column="split",
            unit=self.unit,
            classes=list(self.classes) if self.classes is not None else None,
            description=self.description,
            loss=PRETRAIN_LOSS,
        )


def _check_exact_keys(data: Mapping[str, Any], expected: Sequence[str], where: str) -> None:
    missing = [key for key in expected if key not in data]
    unknown = sorted(str(key) for key in data if key not in expected)
    if missing:
        raise CorpusError(f"{where}: missing key '{missing[0]}' (expected keys: {', '.join(expected)})")
    if unknown:
        raise CorpusError(f"{where}: unknown key '{unknown[0]}' (expected keys: {', '.join(expected)})")


def spec_key(spec: Any) -> str:
    """File-name key of a :class:`~fm_engine.descriptors.DescriptorSpec`: ``<kind>-<16 hex of its JSON's sha256>``."""
    return f"{spec.kind}-{hashlib.sha256(spec.to_json().encode()).hexdigest()[:16]}"


@dataclass
class Corpus:
    """A loaded corpus (see the module docstring). ``frame`` holds the table; matrices are memory-mapped caches
    whose rows are aligned with ``frame``."""

    path: Path
    frame: pd.DataFrame
    tasks: list[CorpusTask]
    rules: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    """sha256 of the composition column as loaded (caches made for other rows are never used); set on first use
    if empty."""

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def task_specs(self) -> list[TaskSpec]:
        """One :class:`TaskSpec` per corpus task, reading its column and the corpus split from the parquet file."""
        return [task.spec(self.path / CORPUS_FILE) for task in self.tasks]

    # ------------------------------------------------------------------ caches
    def weights_matrix(self) -> np.ndarray:
        """The compositions' atomic-fraction weight vectors (N, 94) float32, memory-mapped from
        ``descriptors/weights.npy`` (parsed from the keys on first use, then cached)."""
        return self._cached(WEIGHTS_CACHE, {"what": "weights"}, _n_elements(), self._fill_weights)

    def descriptor_matrix(self, spec: Any = None, *, progress: Callable[[int], object] | None = None) -> np.ndarray:
        """Descriptor rows (N, dim) float32 for ``spec`` (a :class:`~fm_engine.descriptors.DescriptorSpec`,
        default the default spec), memory-mapped from ``descriptors/<spec-key>.npy``.

        Built on first use block by block from :meth:`weights_matrix` (``progress(n_rows)`` after each block)
        and cached; later calls (and later processes) map the file without recomputing. Rows are aligned with
        ``frame``.
        """
        from fm_engine.descriptors import Descriptor, DescriptorSpec, transform_in_blocks

        descriptor = Descriptor(spec if spec is not None else DescriptorSpec())

        def fill(out: np.ndarray) -> None:
            weights = self.weights_matrix()
            _, finite = transform_in_blocks(descriptor, weights, out=out, progress=progress)
            if not finite.all():
                row = int(np.flatnonzero(~finite)[0])
                raise CorpusError(
                    f"{self.path / CORPUS_FILE}: composition {self.frame['composition'].iat[row]!r} (row {row}) "
                    "has a non-finite descriptor"
                )

        meta = {"what": "descriptor", "spec": descriptor.spec.to_dict()}
        return self._cached(spec_key(descriptor.spec), meta, descriptor.dim, fill)

    def _fill_weights(self, out: np.ndarray) -> None:
        _parse_keys_into(self.frame["composition"].tolist(), out, str(self.path / CORPUS_FILE))

    def _cached(self, name: str, meta: dict[str, Any], dim: int, fill: Callable[[np.ndarray], None]) -> np.ndarray:
        folder = self.path / CACHE_DIR
        array_path, meta_path = folder / f"{name}.npy", folder / f"{name}.json"
        rows = len(self.frame)
        current = _fingerprint(self.frame["composition"].tolist())
        if not self.fingerprint:
            self.fingerprint = current
        elif current != self.fingerprint:
            raise CorpusError(
                f"{self.path}: corpus.frame was changed after loading; the cached matrices hold the rows of "
                f"{CORPUS_FILE} in file order: select rows by position from the full matrix instead"
            )
        expected = {**meta, "fingerprint": self.fingerprint, "rows": rows, "dim": dim}
        if array_path.exists() and meta_path.exists():
            try:
                stored = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                stored = None
            if isinstance(stored, dict) and {k: stored.get(k) for k in expected} == expected:
                array = np.load(array_path, mmap_mode="r")
                if array.shape == (rows, dim) and array.dtype == np.float32:
                    return array
        _write_cache(folder, name, expected, fill)
        return np.load(array_path, mmap_mode="r")


def _n_elements() -> int:
    from fm_engine.elements import element_symbols

    return len(element_symbols())


def _fingerprint(compositions: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(compositions).encode()).hexdigest()


def _write_cache(folder: Path, name: str, meta: dict[str, Any], fill: Callable[[np.ndarray], None]) -> None:
    """Write ``<name>.npy`` ((meta rows, meta dim) float32, filled by ``fill`` in a memory-mapped temp file, then
    renamed) and its ``<name>.json`` (``meta`` + build seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with atomic_path(folder / f"{name}.npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(meta["rows"], meta["dim"]))
        fill(out)
        out.flush()
        del out
    atomic_write_json(folder / f"{name}.json", {**meta, "build_seconds": round(time.perf_counter() - start, 3)})


def _parse_keys_into(compositions: Sequence[str], out: np.ndarray, where: str, *, block: int = 65536) -> None:
    """Parse composition keys block by block into weight rows ``out`` (N, 94); a key that is not a composition
    or not canonical raises ``ValueError`` naming ``where`` and the row."""
    from fm_engine.compositions import parse_many

    for start in range(0, len(compositions), block):
        keys = compositions[start : start + block]
        batch = parse_many(keys)
        if batch.n_bad:
            first = batch.bad.iloc[0]
            raise CorpusError(f"{where}: row {start + int(first['row'])}: {first['reason']}")
        for offset, (key, canonical) in enumerate(zip(keys, batch.keys, strict=True)):
            if key != canonical:
                raise CorpusError(
                    f"{where}: row {start + offset}: composition '{key}' is not a canonical key "
                    f"(expected '{canonical}')"
                )
        out[start : start + len(keys)] = batch.weights


# ---------------------------------------------------------------------- writing
def _check_frame(frame: pd.DataFrame, tasks: Sequence[CorpusTask], where: str) -> None:
    names = [task.name for task in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CorpusError(f"{where}: duplicate task name '{duplicates[0]}'")
    columns = [str(c) for c in frame.columns]
    for column in (*BASE_COLUMNS, *names):
        if column not in columns:
            raise CorpusError(f"{where}: column '{column}' is missing")
    extra = [c for c in columns if c not in (*BASE_COLUMNS, *names)]
    if extra:
        raise CorpusError(f"{where}: column '{extra[0]}' is not a corpus task (tasks: {', '.join(names)})")
    compositions = frame["composition"]
    if (
        not pd.api.types.is_string_dtype(compositions)
        or compositions.isna().any()
        or (compositions.str.len() == 0).any()
    ):
        raise CorpusError(f"{where}: column 'composition' must hold non-empty composition keys")
    if not compositions.is_unique:
        duplicate = compositions[compositions.duplicated()].iloc[0]
        raise CorpusError(f"{where}: composition '{duplicate}' appears more than once (keys must be unique)")
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.flatnonzero(bad_split.to_numpy())[0])
        raise CorpusError(f"{where}: row {row}: split {frame['split'].iat[row]!r}, expected one of {', '.join(SPLITS)}")
    for task in tasks:
        column = frame[task.name]
        if column.dtype != np.float64:
            raise CorpusError(
                f"{where}: column '{task.name}' has dtype {column.dtype}, expected float64 (NaN = no label)"
            )
        values = column.to_numpy()
        labelled = values[~np.isnan(values)]
        if not np.isfinite(labelled).all():
            raise CorpusError(f"{where}: column '{task.name}' holds infinite values")
        if task.classes is not None:
            ok = (labelled == np.round(labelled)) & (labelled >= 0) & (labelled < len(task.classes))
            if not ok.all():
                raise CorpusError(
                    f"{where}: column '{task.name}' holds {float(labelled[~ok][0]):g}, expected class indices "
                    f"0..{len(task.classes) - 1} ({', '.join(task.classes)})"
                )


def task_counts(frame: pd.DataFrame, tasks: Sequence[CorpusTask]) -> dict[str, Any]:
    """Labelled compositions per task and split, and compositions per split."""
    split = frame["split"]
    per_task = {}
    for task in tasks:
        labelled = frame[task.name].notna()
        per_task[task.name] = {"total": int(labelled.sum())} | {s: int((labelled & (split == s)).sum()) for s in SPLITS}
    return {
        "n_compositions": len(frame),
        "splits": {s: int((split == s).sum()) for s in SPLITS},
        "tasks": per_task,
    }


def write_corpus(
    path: str | Path,
    frame: pd.DataFrame,
    tasks: Sequence[CorpusTask],
    *,
    manifest: Mapping[str, Any],
    rules: Sequence[str] = (),
    counts: Mapping[str, Any] | None = None,
) -> Path:
    """Write a corpus folder at ``path``, replacing any corpus there as a whole (never half-written).

    ``frame`` needs the columns composition (canonical keys, unique), formula, split and one float64 column per
    task, nothing else. ``manifest`` is stored in manifest.json with ``format_version``, ``n_compositions`` and
    ``created`` added; ``rules`` and ``counts`` (e.g. the builder's per-rule counts, under ``cleaning``) go to
    tasks.json beside the per-task label counts. A folder at ``path`` that is not a corpus is refused.
    """
    path = Path(path)
    tasks = list(tasks)
    _check_frame(frame, tasks, "corpus table")
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / MANIFEST_FILE).exists())):
        raise CorpusError(f"{path}: exists and is not a corpus folder; choose an empty or new folder")
    table = frame[[*BASE_COLUMNS, *(task.name for task in tasks)]].reset_index(drop=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the corpus folder is an ordinary folder
    try:
        compositions = table["composition"].tolist()
        meta = {"what": "weights", "fingerprint": _fingerprint(compositions), "rows": len(table), "dim": _n_elements()}
        # checks every key (parsed, canonical) and caches the weight vectors on the way
        _write_cache(tmp / CACHE_DIR, WEIGHTS_CACHE, meta, lambda out: _parse_keys_into(compositions, out, "corpus"))
        table.to_parquet(tmp / CORPUS_FILE, index=False)
        atomic_write_json(
            tmp / TASKS_FILE,
            {
                "tasks": [task.to_dict() for task in tasks],
                "rules": list(rules),
                "counts": {**task_counts(table, tasks), **dict(counts or {})},
            },
            sort_keys=False,
        )
        atomic_write_json(
            tmp / MANIFEST_FILE,
            {
                **dict(manifest),
                "format_version": FORMAT_VERSION,
                "n_compositions": len(table),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        with open(tmp / CORPUS_FILE, "rb") as handle:
            os.fsync(handle.fileno())
        old = None
        if path.exists():
            old = path.parent / f"{TEMP_PREFIX}{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        sync_folder(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# ---------------------------------------------------------------------- reading
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CorpusError(f"{path}: missing (a corpus folder holds {CORPUS_FILE}, {TASKS_FILE} and {MANIFEST_FILE})")
    try:
        data = read_json_file(path, what="corpus file")  # the project's JSON reader: size and depth limits
    except ValueError as error:
        raise CorpusError(f"{path.parent}: {error}") from None
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: expected a JSON object")
    return data


def _read_manifest(path: Path) -> dict[str, Any]:
    """``manifest.json`` of the corpus folder ``path``, refused unless its format version is this code's."""
    manifest = _read_json(path / MANIFEST_FILE)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CorpusError(
            f"{path / MANIFEST_FILE}: format_version {version!r}, this version of fm_engine reads {FORMAT_VERSION} "
            "(rebuild the corpus with `fm corpus`)"
        )
    return manifest


def read_tasks(path: str | Path) -> tuple[list[CorpusTask], dict[str, Any]]:
    """The checked tasks of the corpus folder ``path`` (its ``tasks.json``) and the whole file's mapping."""
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path}: no corpus folder there (build one with `fm corpus --out {path}`)")
    tasks_path = path / TASKS_FILE
    described = _read_json(tasks_path)
    _check_exact_keys(described, ("tasks", "rules", "counts"), str(tasks_path))
    if not isinstance(described["tasks"], list) or not described["tasks"]:
        raise CorpusError(f"{tasks_path}: 'tasks': expected a non-empty list of tasks")
    if not isinstance(described["rules"], list) or not all(isinstance(r, str) for r in described["rules"]):
        raise CorpusError(f"{tasks_path}: 'rules': expected a list of texts")
    if not isinstance(described["counts"], dict):
        raise CorpusError(f"{tasks_path}: 'counts': expected a mapping")
    tasks = [
        CorpusTask.from_dict(entry, where=f"{tasks_path}: tasks[{i}]") for i, entry in enumerate(described["tasks"])
    ]
    return tasks, described


def check_corpus(path: str | Path) -> list[CorpusTask]:
    """The quick checks of a corpus folder before any work (the table itself is not read): its manifest, its
    tasks and the table's columns. Returns the tasks; a problem raises one :class:`CorpusError` naming it."""
    import pyarrow.parquet as pq

    path = Path(path)
    tasks, _ = read_tasks(path)
    _read_manifest(path)
    table = path / CORPUS_FILE
    if not table.is_file():
        raise CorpusError(f"{table}: missing (a corpus folder holds {CORPUS_FILE}, {TASKS_FILE}, {MANIFEST_FILE})")
    try:
        columns = set(pq.read_schema(table).names)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise CorpusError(f"{table}: not a readable parquet file ({error})") from None
    missing = [c for c in (*BASE_COLUMNS, *(t.name for t in tasks)) if c not in columns]
    if missing:
        raise CorpusError(f"{table}: missing column(s) {', '.join(missing)} (named in {TASKS_FILE})")
    return tasks


def load_corpus(path: str | Path) -> Corpus:
    """Read and check a corpus folder (format version, task list, table columns, keys, splits, labels).

    Raises one :class:`CorpusError` (a ``ValueError``) naming the file and key (or column, row) that is wrong.
    """
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path}: no corpus folder there (build one with `fm corpus --out {path}`)")
    manifest = _read_manifest(path)
    tasks, described = read_tasks(path)
    table_path = path / CORPUS_FILE
    if not table_path.is_file():
        raise CorpusError(f"{table_path}: missing (a corpus folder holds {CORPUS_FILE}, {TASKS_FILE}, {MANIFEST_FILE})")
    try:
        frame = pd.read_parquet(table_path)
    except Exception as error:  # pyarrow raises its own types for damaged files
        raise CorpusError(f"{table_path}: not a readable parquet file ({error})") from None
    _check_frame(frame, tasks, str(table_path))
    if manifest.get("n_compositions") not in (None, len(frame)):
        raise CorpusError(
            f"{path / MANIFEST_FILE}: n_compositions {manifest['n_compositions']}, "
            f"but {CORPUS_FILE} has {len(frame)} rows"
        )
    return Corpus(
        path=path,
        frame=frame,
        tasks=tasks,
        rules=list(described["rules"]),
        counts=described["counts"],
        manifest=manifest,
        fingerprint=_fingerprint(frame["composition"].tolist()),
    )
