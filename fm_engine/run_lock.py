"""One process per run directory: an OS-level lock (``fcntl.flock``) on ``<run>/.run.lock``.

The process that trains into a run directory holds an exclusive lock on its lock file for as long as it
runs; the operating system releases it when the process ends, however it ends (SIGKILL, power loss of the
process, a crash), so a free lock means "nobody is running this", never a stale pid file. The holder
writes its pid and its process start time into the lock file, so a reader can tell the run's process
from an unrelated one that was later given the same pid.

A second process that wants the same directory gets :class:`RunInUseError` at once, before it reads or
writes anything. Locks are re-entrant within one process (``fm demo`` takes the lock, then ``train`` takes
it again). On taking the lock, temp files a killed writer left in the directory are removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fm_engine.safe_io import remove_stale_temps

try:  # POSIX; on other systems runs are not locked (and readers fall back to the recorded pid)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".run.lock"
# temp names older writers leave beside safe_io's (the resume state's and the rehearsal's staging copy)
EXTRA_TEMPS = (".last.ckpt.tmp", ".checkpoint.tmp")


class RunInUseError(ValueError):
    """The run directory is locked by another live process."""


@dataclass(frozen=True)
class LockOwner:
    """The process holding a run's lock: its pid and start time (clock ticks after boot, Linux; or None)."""

    pid: int
    start: str | None

    def is_running(self) -> bool:
        """True while the process with this pid is this owner (same start time where the OS tells it)."""
        return process_matches(self.pid, self.start)


def process_start(pid: int) -> str | None:
    """Start time of process ``pid`` (``/proc/<pid>/stat`` field 22, clock ticks after boot) or None
    (no such process, or no ``/proc`` on this system)."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text(encoding="ascii", errors="replace")
    except (OSError, ValueError):
        return None
    fields = text.rpartition(")")[2].split()  # the command name in (...) may hold spaces
    return fields[19] if len(fields) > 19 else None


def pid_exists(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    except (ValueError, OverflowError):
        return False
    return True


def process_matches(pid: int | None, start: str | None) -> bool:
    """True if process ``pid`` is alive and, when ``start`` is known and the OS reports start times,
    started at ``start`` (so it is the same process, not a later one given the same pid)."""
    if not pid or not pid_exists(int(pid)):
        return False
    if start is None:
        return True
    now = process_start(int(pid))
    return now is None or now == str(start)


def own_identity() -> dict[str, object]:
    """``{"pid": ..., "pid_start": ...}`` of this process, for status.json."""
    pid = os.getpid()
    return {"pid": pid, "pid_start": process_start(pid)}


# ------------------------------------------------------------------------------------------ holding
@dataclass
class _Held:
    fd: int
    count: int


_HELD: dict[Path, _Held] = {}
_HELD_GUARD = threading.Lock()


def _lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve() / LOCK_FILE


def _read_owner(fd: int) -> LockOwner | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "null")
        return LockOwner(pid=int(data["pid"]), start=data.get("start"))
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None


def _in_use(run_dir: Path, owner: LockOwner | None) -> RunInUseError:
    who = f"run pid {owner.pid}" if owner is not None else "another run (starting up)"
    return RunInUseError(f"{run_dir} is in use by {who}; wait for it to finish, or cancel it first")


def clean_stale_temps(run_dir: str | Path) -> list[Path]:
    """Remove what a killed writer left in ``run_dir``: safe_io temps, ``.checkpoint.tmp-*`` folders and
    the resume state's ``.last.ckpt.tmp``. Only call while holding the run's lock."""
    run_dir = Path(run_dir)
    removed = remove_stale_temps(run_dir)
    for name in EXTRA_TEMPS:
        entry = run_dir / name
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif entry.exists():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _lock_exclusive(fd: int, *, tries: int = 10, pause_s: float = 0.01) -> None:
    """``flock(LOCK_EX | LOCK_NB)``, retried for ~0.1 s: a reader's probe (:func:`lock_state`) holds a
    shared lock for microseconds and must not make a starting run fail; a live run holds it for good."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES) or attempt == tries - 1:
                raise
            time.sleep(pause_s)


def acquire(run_dir: str | Path, *, clean: bool = True) -> Path:
    """Lock ``run_dir`` (created if missing) for this process or raise :class:`RunInUseError`; re-entrant.

    Nothing in the directory is changed when the lock is refused. With ``clean`` the temps a killed writer
    left are removed once the lock is taken (:func:`clean_stale_temps`). Pair with :func:`release`."""
    run_dir = Path(run_dir)
    path = _lock_path(run_dir)
    with _HELD_GUARD:
        held = _HELD.get(path)
        if held is not None:
            held.count += 1
            return path
        if fcntl is None:  # pragma: no cover - Windows
            _HELD[path] = _Held(fd=-1, count=1)
            return path
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"{run_dir}: a file is there; expected a run folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child programs (O_CLOEXEC)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise ValueError(f"{run_dir}: cannot create its lock file {LOCK_FILE} ({reason}); expected a writable "
                             "run folder") from None  # fmt: skip
        try:
            _lock_exclusive(fd)
        except OSError as error:
            refused = _in_use(run_dir, _read_owner(fd)) if error.errno in (errno.EAGAIN, errno.EACCES) else None
            os.close(fd)
            if refused is not None:
                raise refused from None
            raise
        pid = os.getpid()
        record = json.dumps({"pid": pid, "start": process_start(pid)}).encode("utf-8")
        os.ftruncate(fd, 0)  # in place: replacing the file would give a new, unlocked inode
        os.pwrite(fd, record, 0)
        _HELD[path] = _Held(fd=fd, count=1)
    if clean:
        clean_stale_temps(run_dir)
    return path


def release(run_dir: str | Path) -> None:
    """Undo one :func:`acquire`; the last one unlocks (the lock file stays: removing it would race)."""
    path = _lock_path(run_dir)
    with _HELD_GUARD:
        held = _HELD.get(path)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _HELD[path]
        if held.fd >= 0:
            os.ftruncate(held.fd, 0)
            os.close(held.fd)  # closing the last descriptor releases the flock


@contextlib.contextmanager
def hold_run(run_dir: str | Path) -> Iterator[Path]:
    """``with hold_run(out):`` the directory is this process's until the block ends (or the process dies)."""
    acquire(run_dir)
    try:
        yield Path(run_dir)
    finally:
        release(run_dir)


def holds(run_dir: str | Path) -> bool:
    """True if this process holds ``run_dir``'s lock."""
    return _lock_path(run_dir) in _HELD


# ------------------------------------------------------------------------------------------ reading
def lock_state(run_dir: str | Path) -> tuple[bool | None, LockOwner | None]:
    """``(held, owner)``: held is True while a process holds the lock, False when the lock file exists but
    is free (its process is gone), None when there is no lock file (never started under a lock).
    ``owner`` is the holder's recorded pid and start time (None if free or not yet recorded)."""
    path = _lock_path(run_dir)
    if fcntl is None:  # pragma: no cover - Windows
        return None, None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None, None
    except OSError:
        return None, None
    try:
        with _HELD_GUARD:
            mine = path in _HELD
        if mine:
            return True, LockOwner(pid=os.getpid(), start=process_start(os.getpid()))
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return True, _read_owner(fd)
            return None, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)


def empty_run_dir(run_dir: str | Path) -> None:
    """Delete everything in ``run_dir`` but its lock file (to start a run again); the caller holds the lock."""
    if not holds(run_dir):
        raise RuntimeError(f"{run_dir}: empty_run_dir needs the run's lock")
    for entry in Path(run_dir).iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def is_rank_zero() -> bool:
    """Before the Trainer exists: rank from the launcher's environment (DDP re-launches this process)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def refuse_if_in_use(run_dir: str | Path) -> None:
    """Raise :class:`RunInUseError` at once if another live process holds ``run_dir``; creates nothing.

    A quick early check for commands (before their heavy imports); :func:`acquire` still decides. DDP's
    other ranks (re-launched copies of the command, while rank 0 holds the lock) are let through."""
    if not is_rank_zero():
        return
    held, owner = lock_state(run_dir)
    if held and not holds(run_dir):
        raise _in_use(Path(run_dir), owner)
