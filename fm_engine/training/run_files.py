"""The run directory, readable while a run trains.

* ``status.json``: ``state`` (queued / running / done / failed / cancelled), ``epoch``, ``step``,
  ``max_epochs``, ``eta_seconds``, ``pid``, ISO timestamps, ``message``; replaced atomically.
* ``metrics.jsonl``: one JSON object per line: ``{"kind": "step", ...}`` every ~second of training and
  ``{"kind": "epoch", ...}`` with per-task train/val losses and val metrics in physical units. Each line is
  appended with a single ``write``; readers skip an incomplete last line. A resumed run first drops the
  records of the epochs it repeats, so the file holds one ``epoch`` record per epoch.
* ``.run.lock``: held (``flock``) by the process that trains into the directory (see :mod:`fm_engine.run_lock`).

A status that says ``queued`` / ``running`` while no process holds the lock (or its recorded process is
gone, or the pid now belongs to another program) is a run that stopped unexpectedly (SIGKILL, crash,
reboot): :meth:`RunDirectory.checked_status` reports it as ``failed`` with how to resume it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fm_engine.run_lock import lock_state, process_matches
from fm_engine.safe_io import atomic_write_json, atomic_write_text, json_safe

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")


@dataclass
class WallClock:
    """Wall time of a run over all its segments, in seconds: a resumed run continues the count of the
    earlier segments (``previous_s``, from status.json's ``wall_time_s``) instead of starting at 0."""

    previous_s: float = 0.0
    segments: int = 1  # how many processes have trained this run (1 + the number of resumes)
    start: float = field(default_factory=time.perf_counter)

    def segment(self) -> float:
        """Seconds since this process started the run (or resumed it)."""
        return time.perf_counter() - self.start

    def total(self) -> float:
        """Seconds over every segment so far."""
        return self.previous_s + self.segment()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunDirectory:
    """Accessors for one run's files (the paths below are fixed when it is made)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.status_path = self.path / "status.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.checkpoint_path = self.path / "checkpoint"
        self.resume_path = self.path / "last.ckpt"
        self.config_path = self.path / "config.yaml"
        self.model_config_path = self.path / "model_config.json"
        self.log_path = self.path / "train.log"

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        status = self.read_status()
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown run state {fields['state']!r}")
        status.update(fields)
        status["updated_at"] = now_iso()
        atomic_write_json(self.status_path, status)
        return status

    def process_gone(self, status: dict[str, Any] | None = None) -> bool | None:
        """For a ``queued`` / ``running`` status: True if no process runs it any more (the lock is free, or
        without a lock file the recorded pid is gone or belongs to another process now), False if its
        process runs, None if it cannot tell (no lock file and no pid yet: the process is starting)."""
        status = self.read_status() if status is None else status
        held, _ = lock_state(self.path)
        if held is not None:
            return not held
        pid = status.get("pid")
        if not pid:
            return None
        return not process_matches(int(pid), status.get("pid_start"))

    def resume_hint(self, status: dict[str, Any]) -> str:
        """How to continue a run that stopped: the command, or "start it again" without resume state."""
        if status.get("kind") == "rehearsal":
            return f"resume with: fm rehearsal --out {self.path} --resume"
        if self.resume_path.exists() and status.get("kind") != "finetune":
            return f"resume with: fm train --out {self.path} --resume"
        return "no resume state was saved yet: start it again"

    def stopped_status(self, status: dict[str, Any], reason: str = "") -> dict[str, Any]:
        """``status`` of a run whose process is gone, as readers should show it: ``failed``, flagged
        ``stopped_unexpectedly`` (and ``resumable`` when it can continue), its message saying what
        happened (``reason``: e.g. the last error of its log) and how to resume."""
        pid = status.get("pid")
        process = f"process {pid}" if pid else "its process"
        why = reason or "killed, crashed or the machine restarted"
        return {**status, "state": "failed", "stopped_unexpectedly": True,
                "resumable": self.resume_path.exists() or status.get("kind") == "rehearsal",
                "message": f"stopped unexpectedly ({process} ended without a final status: {why}); "
                           f"{self.resume_hint(status)}"}  # fmt: skip

    def checked_status(self) -> dict[str, Any]:
        """status.json with a dead run (see :meth:`process_gone`) reported as ``failed``, not ``running``."""
        status = self.read_status()
        if status.get("state", "queued") in ACTIVE_STATES and self.process_gone(status):
            return self.stopped_status(status)
        return status

    def append_metrics(self, record: dict[str, Any]) -> None:
        line = json.dumps(json_safe({"time": time.time(), **record}), sort_keys=True) + "\n"
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete records (an incomplete last line, if a writer is mid-write, is skipped)."""
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def drop_metrics_from(self, epoch: int) -> int:
        """Remove the records of ``epoch`` and later (a resumed run repeats them); returns how many."""
        records = self.read_metrics()
        kept = [r for r in records if not isinstance(r.get("epoch"), int) or r["epoch"] < epoch]
        if len(kept) == len(records) and self.metrics_path.exists():
            return 0
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        if kept or self.metrics_path.exists():
            atomic_write_text(self.metrics_path, text)
        return len(records) - len(kept)
