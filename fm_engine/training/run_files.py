"""The run directory, readable while a run trains.

* ``status.json``: ``state`` (queued / running / done / failed / cancelled), ``epoch``, ``step``,
  ``max_epochs``, ``eta_seconds``, ``pid``, ISO timestamps, ``message``; replaced atomically.
* ``metrics.jsonl``: one JSON object per line: ``{"kind": "step", ...}`` every ~second of training and
  ``{"kind": "epoch", ...}`` with per-task train/val losses and val metrics in physical units. Each line is
  appended with a single ``write``; readers skip an incomplete last line.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fm_engine.safe_io import atomic_write_json, json_safe

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync it, then rename over ``path``."""
    atomic_write_json(path, data)


class RunDirectory:
    """Accessors for one run's files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint"

    @property
    def resume_path(self) -> Path:
        return self.path / "last.ckpt"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def model_config_path(self) -> Path:
        return self.path / "model_config.json"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

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
        write_json_atomic(self.status_path, status)
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
