"""Training runs in the workspace: start them as separate OS processes, list them, cancel them.

Training never runs inside the Streamlit process: each run is ``python -m fm_engine.cli train`` (or
``demo``, ``finetune``, ``rehearsal``) in its own session, writing its run directory (status.json,
metrics.jsonl, checkpoint/), so a run survives page reloads, closed tabs and even a restart of the workbench.

A rehearsal folder is a run folder too: its status.json has ``kind: rehearsal`` and names the current
step's run folder (``current_run``), which holds that step's metrics.jsonl.

A run whose status says queued / running but whose process is gone (its lock is free, see
:mod:`fm_engine.run_lock`) is shown as failed, with how to resume it. Cancel signals a process
only after checking that it holds the run's lock and is the process recorded there (pid and start time).
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

from fm_engine.run_lock import lock_state, process_matches, process_start
from fm_engine.safe_io import atomic_write_text
from fm_engine.threads import thread_environment
from fm_engine.training.ensemble import is_ensemble_run
from fm_engine.training.rehearsal import REHEARSAL_FILE
from fm_engine.training.run_files import ACTIVE_STATES, RunDirectory
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


_CHILDREN: dict[int, subprocess.Popen] = {}  # processes started by this workbench process, by pid


def _alive(pid: int | None, start: str | None = None) -> bool:
    """True if ``pid`` is alive and (when ``start`` is known) still the process that started at ``start``."""
    if not pid:
        return False
    child = _CHILDREN.get(int(pid))
    if child is not None:
        return child.poll() is None  # also reaps it: a finished child is not left as a zombie
    return process_matches(int(pid), start)


LAUNCHER_PID = ".launcher_pid"  # "pid start" of the process the workbench started (before it locks the run)


def _launcher(path: Path) -> tuple[int | None, str | None]:
    """The launched process's pid and start time (None, None if not recorded)."""
    try:
        fields = (path / LAUNCHER_PID).read_text(encoding="utf-8").split()
        return int(fields[0]), (fields[1] if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None, None


def last_error(path: Path) -> str:
    """The last error line (``error: ...`` from the CLI, or ``SomeError: ...``) of a run's train.log."""
    try:
        lines = [line.strip() for line in (path / "train.log").read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:") or re.match(r"^[\w.]*(Error|Exception): ", line)]
    return errors[-1][:500] if errors else ""


def run_info(path: Path) -> RunInfo:
    """The run's status, with a run whose process is gone (killed, bad config, machine restarted) reported
    as ``failed`` (``stopped_unexpectedly``) and its message saying how to resume it."""
    run = RunDirectory(path)
    status = run.read_status()
    state = status.get("state", "queued")
    if state in ACTIVE_STATES:
        gone = run.process_gone(status)
        if gone is not False:  # not locked (yet): the process the workbench launched may still be starting
            pid, start = _launcher(path)
            if pid and _alive(pid, start):
                gone = False  # e.g. resuming: the lock file of the earlier process is there, free, until it locks
            elif gone is None:
                gone = bool(pid)
        if gone:
            reason = last_error(path)
            status = run.stopped_status(status, reason)
            state = status["state"]
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


def launch_environment() -> dict[str, str]:
    """The environment of a run's process: ours, unbuffered output, and the thread policy's variables
    (OpenMP threads wait passively; see fm_engine.threads)."""
    return {**os.environ, **thread_environment(), "PYTHONUNBUFFERED": "1"}


def _launch(args: list[str], run_dir: Path) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = launch_environment()
    with open(run_dir / "train.log", "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "fm_engine.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the Streamlit session; cancel signals the whole group
            env=env,
            cwd=run_dir,
        )
    _CHILDREN[process.pid] = process
    # a process that dies before locking the run (e.g. a bad config) is still noticed
    atomic_write_text(run_dir / LAUNCHER_PID, f"{process.pid} {process_start(process.pid) or ''}".strip())
    return process


def without_pickle_opt_in(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without ``data.allow_pickle``: the workbench never reads pickled data (a browser user
    cannot opt in in person for the machine running the server)."""
    config = dict(config)
    if isinstance(config.get("data"), dict):
        config["data"] = {key: value for key, value in config["data"].items() if key != "allow_pickle"}
    return config


def submitted_config_path(run_dir: Path) -> Path:
    """Where the workbench keeps the config it started a run (or rehearsal) with: ``.<run folder>.yaml`` beside
    the run folder (the run's own ``config.yaml`` records the settings it resolved)."""
    return run_dir.parent / f".{run_dir.name}.yaml"


def submitted_config(run_dir: Path) -> dict[str, Any] | None:
    """The config the workbench started ``run_dir`` with; None for a run started elsewhere (or unreadable)."""
    try:
        config = yaml.safe_load(submitted_config_path(run_dir).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def start_training(config: dict[str, Any], name: str) -> Path:
    """Start ``fm train`` on ``config`` (a training-config dict) in a new run folder; returns it."""
    run_dir = new_run_dir(name)
    run_dir.mkdir(parents=True)
    config_file = submitted_config_path(run_dir)
    atomic_write_text(config_file, yaml.safe_dump(without_pickle_opt_in(config), sort_keys=False))
    RunDirectory(run_dir).update_status(state="queued", name=name, message="starting", created_at=_now())
    _launch(["train", "--config", str(config_file), "--out", str(run_dir), "--no-progress"], run_dir)
    return run_dir


def start_finetune(
    checkpoint_run: Path, tasks: list[str], name: str, *, max_epochs: int | None = None, lr: float | None = None
) -> Path:
    """Start ``fm finetune`` (retrain the heads of ``tasks`` on the frozen encoder of ``checkpoint_run``)."""
    tasks = [t.strip() for t in tasks if t and t.strip()]
    if not tasks:
        raise ValueError("choose at least one task whose head is retrained")
    run_dir = new_run_dir(name)
    run_dir.mkdir(parents=True)
    RunDirectory(run_dir).update_status(
        state="queued", name=name, message="starting", created_at=_now(), kind="finetune",
        source_run=str(checkpoint_run), finetune_tasks=tasks,
    )  # fmt: skip
    args = ["finetune", "--checkpoint", str(checkpoint_run), "--tasks", ",".join(tasks), "--out", str(run_dir)]
    if max_epochs is not None:
        args += ["--max-epochs", str(int(max_epochs))]
    if lr is not None:
        args += ["--lr", repr(float(lr))]
    _launch([*args, "--no-progress"], run_dir)
    return run_dir


def _task_name(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("name") or entry.get("bundled") or "?")
    return str(entry)


def start_rehearsal(config: dict[str, Any], name: str) -> Path:
    """Start ``fm rehearsal`` on ``config`` (a rehearsal-config dict: tasks in learning order, replay_ratio,
    and the training sections) in a new run folder; returns it."""
    run_dir = new_run_dir(name)
    run_dir.mkdir(parents=True)
    config_file = submitted_config_path(run_dir)
    atomic_write_text(config_file, yaml.safe_dump(without_pickle_opt_in(config), sort_keys=False))
    tasks = [_task_name(entry) for entry in config.get("tasks", [])]
    steps = [{"step": i, "task": task, "run_dir": "", "state": "queued"} for i, task in enumerate(tasks, start=1)]
    RunDirectory(run_dir).update_status(
        state="queued", name=name, message="starting", created_at=_now(), kind="rehearsal", step=0,
        n_steps=len(tasks), steps=steps, epoch=0, max_epochs=(config.get("trainer") or {}).get("max_epochs"),
    )  # fmt: skip
    _launch(["rehearsal", "--config", str(config_file), "--out", str(run_dir), "--no-progress"], run_dir)
    return run_dir


def start_scaling(config: dict[str, Any], task: str, ratios: list[float], name: str) -> Path:
    """Start ``fm scaling`` (one run per keep-ratio of ``task``'s training data, each on ``config``, a
    training-config dict) in a new folder; returns it. Its status.json (``kind: scaling``) names the ratio in
    training."""
    run_dir = new_run_dir(name)
    run_dir.mkdir(parents=True)
    config_file = submitted_config_path(run_dir)
    atomic_write_text(config_file, yaml.safe_dump(without_pickle_opt_in(config), sort_keys=False))
    RunDirectory(run_dir).update_status(state="queued", name=name, message="starting", created_at=_now(),
                                        kind="scaling", task=task, step=0, n_steps=len(ratios))  # fmt: skip
    args = ["scaling", "--config", str(config_file), "--task", task, "--ratios", ",".join(f"{r:g}" for r in ratios)]
    _launch([*args, "--out", str(run_dir), "--no-progress"], run_dir)
    return run_dir


def demo_state() -> str | None:
    """The state of the workspace's demo run (queued, running, done, failed, cancelled), None if never started."""
    run_dir = demo_run_dir()
    return run_info(run_dir).state if (run_dir / "status.json").exists() else None


# What the Overview says about the demo when a foundation is installed (fm demo's start_from is auto).
FOUNDATION_DEMO = (
    "The demo fine-tunes the installed foundation (pretrained on DFT data of ~400k compositions): the demo model "
    "also predicts the foundation's DFT properties, e.g. formation enthalpy and energy above hull, so Inverse design "
    "can combine your targets with stability. Predict and Inverse design work on the foundation itself right away "
    "(pick it in the sidebar)."
)


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


def resumable(info: RunInfo) -> bool:
    """True for a run that can go on where it stopped: cancelled, or stopped unexpectedly (its process killed, the
    machine restarted), with its training state saved (``last.ckpt``; an ensemble's members; a rehearsal's steps).
    A fine-tune or a run that failed with an error is started again instead."""
    status = info.status
    stopped = info.state == "cancelled" or (info.state == "failed" and bool(status.get("stopped_unexpectedly")))
    if not stopped or status.get("kind") == "finetune":
        return False
    if status.get("kind") == "rehearsal":
        return (info.path / REHEARSAL_FILE).is_file()
    return RunDirectory(info.path).resume_path.exists() or is_ensemble_run(None, info.path, resume=True)


def resume(run_dir: Path) -> Path:
    """Continue a :func:`resumable` run in its own folder (``fm train --out RUN --resume``; a rehearsal: ``fm
    rehearsal --out RUN --resume``) as a new process; the run's own recorded config is used. Returns the folder."""
    info = run_info(Path(run_dir))
    if not resumable(info):
        raise ValueError(f"{info.name} cannot be resumed ({info.state}, no saved training state): start it again")
    command = "rehearsal" if info.status.get("kind") == "rehearsal" else "train"
    RunDirectory(info.path).update_status(state="queued", message="resuming", finished_at=None)
    _launch([command, "--out", str(info.path), "--resume", "--no-progress"], info.path)
    return info.path


def _run_process(run_dir: Path) -> int | None:
    """The pid of the process that runs ``run_dir``, verified, or None.

    Verified means: it holds the run's lock and is the process recorded in the lock file (same pid, same
    start time), or, before the run is locked, it is a child this workbench launched for it and has not
    ended. A pid in status.json alone is never trusted: after a kill it may belong to anything."""
    held, owner = lock_state(run_dir)
    if held:
        return owner.pid if owner is not None and owner.is_running() else None
    if held is None:
        pid, _ = _launcher(run_dir)
        child = _CHILDREN.get(pid) if pid else None
        if child is not None and child.poll() is None:
            return child.pid
    return None


def cancel(run_dir: Path) -> bool:
    """Send SIGTERM to the run's process (it saves its state and marks itself cancelled); True if sent.

    Only a process verified to be the run's (:func:`_run_process`) is signalled: a run that is not running,
    or whose recorded pid now belongs to another program, is left alone (returns False). Where the OS has
    pidfds, the process is pinned first and verified again, so the signal cannot reach a later process
    that was given the same pid in between."""
    run_dir = Path(run_dir)
    pid = _run_process(run_dir)
    if pid is None:
        return False
    try:
        if not hasattr(os, "pidfd_open"):  # pragma: no cover - without pidfds
            os.kill(pid, signal.SIGTERM)
            return True
        fd = os.pidfd_open(pid)
        try:
            if _run_process(run_dir) != pid:
                return False
            signal.pidfd_send_signal(fd, signal.SIGTERM)
        finally:
            os.close(fd)
    except ProcessLookupError:
        return False
    return True


def _now() -> str:
    from fm_engine.training.run_files import now_iso

    return now_iso()


def delete_run(run: Path, *, root: Path | None = None) -> None:
    """Delete a run folder of the workspace; refuses folders outside it and runs still training."""
    root = (root or runs_dir()).resolve()
    path = Path(run).resolve()
    if path.parent != root or not path.is_dir():
        raise ValueError(f"{run}: not a run folder of this workspace ({root})")
    if (path / "status.json").exists() and run_info(path).state in ("queued", "running"):
        raise ValueError(f"{path.name} is still training: cancel it on the Train page first")
    shutil.rmtree(path)
