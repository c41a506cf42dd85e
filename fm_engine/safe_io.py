"""Writing files so that nothing is ever half-written or lost: temp file + fsync + rename.

Every file ``fm_engine`` writes for a user (CSV, JSON, parquet, text, uploads) goes through
:func:`atomic_write`: the bytes land in a temporary file in the destination's folder, are flushed to
disk, and only then replace the destination in one ``os.replace``. A kill, a full disk or an error
midway leaves the old file (or no file) in place, never a truncated one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TEMP_PREFIX = ".fm-tmp-"


def sync_folder(folder: str | Path) -> None:
    """fsync a folder so that renames inside it survive a power cut (best effort: not every file system
    allows opening a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    For writers that insist on a file name (``DataFrame.to_parquet``, ``to_csv``). On any error the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(handle)`` on a binary temp file, then fsync and rename it onto ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """JSON-safe copy: NaN / inf become null (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | Path, data: Any, *, indent: int = 2, sort_keys: bool = True) -> Path:
    """Replace ``path`` with ``data`` as JSON atomically (non-finite floats become null)."""
    return atomic_write_text(path, json.dumps(json_safe(data), indent=indent, sort_keys=sort_keys, default=str))


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files and folders a killed writer left in ``folder`` (not recursive).

    Returns what was removed. Only names this module (or the checkpoint writer's
    ``.checkpoint.tmp-*``) creates are touched.
    """
    import shutil

    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.name.startswith((TEMP_PREFIX, ".checkpoint.tmp-")):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the file at ``path`` as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
