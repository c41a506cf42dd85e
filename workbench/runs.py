"""Training runs in the workspace: start them as separate OS processes, list them, cancel them.

Training never runs inside the Streamlit process: each run is ``python -m fm_engine.cli train`` (or
``demo``) in its own session, writing its run directory (status.json, metrics.jsonl, checkpoint/), so a
run survives page reloads, closed tabs and even a restart of the workbench.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fm_engine.training.run_files import FINAL_STATES, RunDirectory
from fm_engine.workspace import demo_run_dir, runs_dir


@dataclass(frozen=True)
class RunInfo:
    path: Path
    name: str
    state: str
    status: dict[str, Any]

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / "checkpoint" / "config.json").exists()


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    return True


def run_info(path: Path) -> RunInfo:
    status = RunDirectory(path).read_status()
    state = status.get("state", "queued")
    if state not in FINAL_STATES and status.get("pid") and not _alive(status.get("pid")):
        state = "failed"  # the process is gone without saying so (killed, machine restarted)
        status = {**status, "message": status.get("message", "") + " (process ended unexpectedly)"}
    return RunInfo(path=path, name=path.name, state=state, status=status)


def list_runs() -> list[RunInfo]:
    """Every run in the workspace, newest first."""
    runs = [run_info(p) for p in runs_dir().iterdir() if p.is_dir() and (p / "status.json").exists()]
    return sorted(runs, key=lambda r: r.status.get("created_at") or r.status.get("started_at") or "", reverse=True)


def new_run_dir(name: str) -> Path:
    """A fresh run folder name under the workspace: ``<name>-YYYYmmdd-HHMMSS`` (sanitised)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-") or "run"
    path = runs_dir() / f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = runs_dir() / f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
    return path


def _launch(args: list[str], run_dir: Path) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "train.log", "ab")  # noqa: SIM115 - handed to the child process
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "fm_engine.cli", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives the Streamlit session; cancel signals the whole group
        env=env,
        cwd=run_dir,
    )


def start_training(config: dict[str, Any], name: str) -> Path:
    """Start ``fm train`` on ``config`` (a training-config dict) in a new run folder; returns it."""
    run_dir = new_run_dir(name)
    run_dir.mkdir(parents=True)
    config_file = run_dir.parent / f".{run_dir.name}.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    RunDirectory(run_dir).update_status(state="queued", name=name, message="starting", created_at=_now())
    _launch(["train", "--config", str(config_file), "--out", str(run_dir), "--no-progress"], run_dir)
    return run_dir


def start_demo() -> Path:
    """Start ``fm demo`` into the workspace's demo run folder (no-op if it is already there)."""
    run_dir = demo_run_dir()
    if run_dir.exists():
        if run_info(run_dir).state in ("queued", "running", "done"):
            return run_dir
        shutil.rmtree(run_dir)  # a failed or cancelled demo: start again
    RunDirectory(run_dir).update_status(state="queued", name="demo", message="starting", created_at=_now())
    _launch(["demo", "--out", str(run_dir), "--no-progress"], run_dir)
    return run_dir


def cancel(run_dir: Path) -> bool:
    """Send SIGTERM to the run's process group (the run saves its state and marks itself cancelled)."""
    pid = RunDirectory(run_dir).read_status().get("pid")
    if not _alive(pid):
        return False
    try:
        os.killpg(os.getpgid(int(pid)), signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _now() -> str:
    from fm_engine.training.run_files import now_iso

    return now_iso()
