"""Output folders checked before any work starts: a folder (not a file), writable, and not holding something else.

What an occupied ``--out`` means, per command (``kind``):

* ``run`` (``fm train`` / ``fm finetune`` / ``fm demo``): a new or empty folder, or a run folder without a
  checkpoint or ``last.ckpt`` (an earlier attempt that failed before training). A finished or resumable run is
  refused unless ``resume`` (``fm train --resume``); a folder holding other files is always refused.
* ``design``: a new or empty folder, or an earlier design's folder (its files are replaced).
* ``scaling``: a new or empty folder (an earlier study is never overwritten).
* ``rehearsal``: a new or empty folder; with ``resume``, the earlier rehearsal's folder.

Names starting with a dot (``.DS_Store``, lock files) and the files a launcher (the workbench) writes before it
starts the command (``status.json``, ``train.log``) do not count as contents.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from fm_engine.run_lock import refuse_if_in_use

OutputKind = Literal["run", "design", "scaling", "rehearsal"]
RUN_FILES = ("status.json", "config.yaml", "model_config.json", "metrics.jsonl", "checkpoint", "last.ckpt")
LAUNCH_FILES = ("status.json", "train.log")  # written by the workbench into a new run folder before the command
MARKERS: dict[str, tuple[str, ...]] = {
    "run": RUN_FILES,
    "design": ("results.json", "recipes.csv", "SUMMARY.md"),
    "scaling": ("scaling.json",),
    "rehearsal": ("rehearsal.json",),
}


def contents(path: Path) -> list[str]:
    """The names in folder ``path`` that do not start with a dot (empty if it does not exist)."""
    return sorted(name for name in os.listdir(path) if not name.startswith(".")) if path.is_dir() else []


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds the files of an ``fm train`` run."""
    return any((path / name).exists() for name in RUN_FILES)


def check_writable(path: Path, *, option: str = "--out") -> None:
    """Refuse ``path`` if it, or its nearest existing parent, is a file or cannot be written in (tested by
    creating and removing a temporary file there: read-only mounts and permissions both count)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {path}: {existing} is a file; expected a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fm-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(
            f"{option} {path}: cannot write in {existing} ({reason}); expected a writable folder"
        ) from None


def check_output_dir(path: str | Path, *, kind: OutputKind, resume: bool = False, option: str = "--out") -> Path:
    """``path`` as a ``Path`` if a ``kind`` command may write its results there (see the module docstring);
    otherwise a ``ValueError`` naming the option, the folder and what was expected. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: a file is there; expected a folder")
    check_writable(path, option=option)
    if kind != "design":
        refuse_if_in_use(path)  # a live run's files are "in use", not "already holds a run"
    names = [name for name in contents(path) if name not in LAUNCH_FILES]
    if not names:
        return path
    own = any((path / name).exists() for name in MARKERS[kind])
    if kind == "run" and own:
        finished = (path / "checkpoint").exists() or (path / "last.ckpt").exists()
        if finished and not resume:
            raise ValueError(f"{option} {path} already holds a run; choose another {option} or use --resume")
        return path
    if own and (kind == "design" or resume):
        return path
    if own:
        raise ValueError(f"{option} {path} already holds a {kind}; choose another {option} or use --resume"
                         if kind == "rehearsal" else
                         f"{option} {path} already holds a {kind} study; choose another {option}")  # fmt: skip
    if resume:
        raise ValueError(f"{option} {path}: nothing to resume (no {MARKERS[kind][0]} there)")
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise ValueError(
        f"{option} {path} is a folder holding other files ({shown}); expected a new or empty folder "
        f"(fm never writes its results among other files)"
    )
