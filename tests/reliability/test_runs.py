"""Runs under faults (issue 14, finding 6): one process per run directory (an OS lock), a killed run is
reported as stopped and resumable, Cancel signals only the run's own process, temp files a killed writer
left are cleaned, and a resumed run counts its whole wall time and logs one record per epoch.

Real processes throughout: ``fm`` commands as subprocesses, real SIGKILL / SIGTERM, real ``sleep``
processes standing in for unrelated programs that were given a dead run's pid.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from fm_engine.run_lock import LOCK_FILE, acquire, hold_run, lock_state, process_start, release
from fm_engine.training import RunDirectory
from tests.ceiling import CEILING_S
from tests.conftest import tiny_config_dict
from tests.workbench.conftest import open_page
from workbench.runs import cancel, run_info
from workbench.state import WATCHED_RUN

FM = [sys.executable, "-m", "fm_engine.cli"]


# ------------------------------------------------------------------------------------------ helpers
def wait_for(condition: Callable[[], bool], timeout: float = CEILING_S, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with a hash of its bytes (folders: "dir")."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        out[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_train(config_file: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [*FM, "train", "--config", str(config_file), "--out", str(out), "--no-progress", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def epochs_logged(run: RunDirectory) -> list[int]:
    return [r["epoch"] for r in run.read_metrics() if r["kind"] == "epoch"]


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen]:
    """An unrelated program (``sleep``) that a dead run's pid could now belong to."""
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen]]:
    """Start a separate process that holds a run directory's lock (as a training run does) until killed."""
    started: list[subprocess.Popen] = []

    def hold(run_dir: Path) -> subprocess.Popen:
        code = (
            "import sys\nfrom fm_engine.run_lock import acquire\n"
            f"acquire({str(run_dir)!r})\nprint('locked', flush=True)\nsys.stdin.read()\n"
        )
        process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True)  # fmt: skip
        started.append(process)
        assert process.stdout.readline().strip() == "locked"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A real ``fm train`` killed with SIGKILL after two epochs and a saved resume state: status.json
    still says ``running``. Tests copy it before changing it."""
    out = tmp_path_factory.mktemp("killed") / "run"
    run = RunDirectory(out)
    config = write_config(out.parent / "config.yaml", tiny_config_dict(tiny_data, max_epochs=400, patience=400))
    process = start_train(config, out)
    try:
        wait_for(lambda: len(epochs_logged(run)) >= 2 and run.resume_path.exists(), what="two epochs")
        wait_for(lambda: run.read_status().get("wall_time_s", 0) > 0, what="wall time in status.json")
    finally:
        process.kill()  # SIGKILL: no chance to write a final status
        process.communicate(timeout=CEILING_S)
    assert run.read_status()["state"] == "running"
    return out


def copy_run(source: Path, target: Path) -> RunDirectory:
    shutil.copytree(source, target)
    return RunDirectory(target)


# ------------------------------------------------------------------------------------------ the lock
def test_two_trainings_started_together_on_one_out_one_runs_the_other_exits_2(tiny_data, tmp_path):
    out = tmp_path / "run"
    configs = {name: write_config(tmp_path / f"{name}.yaml", {**tiny_config_dict(tiny_data, max_epochs=400,
               patience=400), "name": name}) for name in ("first", "second")}  # fmt: skip
    processes = {name: start_train(config, out) for name, config in configs.items()}
    try:
        wait_for(lambda: any(p.poll() is not None for p in processes.values()), what="one of the two to exit")
        loser_name = next(name for name, p in processes.items() if p.poll() is not None)
        winner_name = next(name for name in processes if name != loser_name)
        loser, winner = processes[loser_name], processes[winner_name]
        _, error = loser.communicate(timeout=CEILING_S)
        assert loser.returncode == 2, error
        assert error.strip() == (
            f"error: {out} is in use by run pid {winner.pid}; wait for it to finish, or cancel it first"
        )
        assert "Traceback" not in error
        run = RunDirectory(out)
        wait_for(lambda: run.read_status().get("state") == "running" and len(epochs_logged(run)) >= 1,
                 what="the winner to train")  # fmt: skip
        assert winner.poll() is None  # the winner was not disturbed
        status = run.read_status()
        assert status["name"] == winner_name and status["pid"] == winner.pid  # the loser wrote nothing
        assert yaml.safe_load(run.config_path.read_text())["name"] == winner_name
        winner.send_signal(signal.SIGTERM)
        winner.communicate(timeout=CEILING_S)
        assert winner.returncode == 143
        epochs = epochs_logged(run)
        assert epochs == list(range(len(epochs)))  # one writer: no interleaved records
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


def _rehearsal_config(folder: Path, tiny_data: Path) -> Path:
    return write_config(folder / "rehearsal.yaml", {**tiny_config_dict(tiny_data), "replay_ratio": 0.2})


SAMPLE_TRAINER_CONFIG = Path(__file__).resolve().parents[2] / "samples" / "lightning_cli_config.yaml"
IN_USE_COMMANDS = {  # argv after ``python -m``, given the busy folder, the configs and a checkpoint
    "fm train": lambda out, cfg, ckpt: ["fm_engine.cli", "train", "--config", str(cfg["train"]), "--out", str(out)],
    "fm train --resume": lambda out, cfg, ckpt: ["fm_engine.cli", "train", "--out", str(out), "--resume"],
    "fm demo --force": lambda out, cfg, ckpt: ["fm_engine.cli", "demo", "--out", str(out), "--force"],
    "fm finetune": lambda out, cfg, ckpt: [
        "fm_engine.cli",
        "finetune",
        "--checkpoint",
        str(ckpt),
        "--tasks",
        "bulk_modulus",
        "--out",
        str(out),
    ],  # fmt: skip
    "fm rehearsal": lambda out, cfg, ckpt: [
        "fm_engine.cli",
        "rehearsal",
        "--config",
        str(cfg["rehearsal"]),
        "--out",
        str(out),
    ],  # fmt: skip
    "fm scaling": lambda out, cfg, ckpt: [
        "fm_engine.cli",
        "scaling",
        "--config",
        str(cfg["train"]),
        "--task",
        "bulk_modulus",
        "--ratios",
        "1,0.5",
        "--out",
        str(out),
    ],  # fmt: skip
    "fm-trainer fit": lambda out, cfg, ckpt: [
        "fm_engine.trainer_cli",
        "fit",
        "--config",
        str(SAMPLE_TRAINER_CONFIG),
        f"--trainer.default_root_dir={out}",
    ],  # fmt: skip
}


@pytest.mark.parametrize("command", list(IN_USE_COMMANDS))
def test_a_directory_in_use_is_refused_at_once_and_left_untouched(command, tiny_data, tiny_run, tmp_path, holder):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "status.json").write_text(json.dumps({"state": "running", "name": "someone else's"}))
    (out / "last.ckpt").write_bytes(b"resume state of the live run")
    (out / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 0}\n')
    (out / ".checkpoint.tmp-live").mkdir()  # the live run's checkpoint being written: never cleaned by others
    (out / ".checkpoint.tmp-live" / "model.safetensors").write_bytes(b"half written")
    configs = {"train": write_config(tmp_path / "train.yaml", tiny_config_dict(tiny_data)),
               "rehearsal": _rehearsal_config(tmp_path, tiny_data)}  # fmt: skip
    live = holder(out)
    before = snapshot(out)
    argv = IN_USE_COMMANDS[command](out, configs, tiny_run)
    fm = argv[0] == "fm_engine.cli"
    argv += ["--no-progress"] if fm else []
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", *argv], capture_output=True, text=True,
                            timeout=CEILING_S)  # fmt: skip
    imported = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if "import time:" in line}
    errors = [line for line in result.stderr.splitlines() if "import time:" not in line]
    assert result.returncode == 2, result.stdout + "\n".join(errors)
    assert f"error: {out} is in use by run pid {live.pid}" in errors[-1]
    assert not any("Traceback" in line for line in errors)
    if fm:  # refused at once: before torch (let alone the data) is even loaded
        assert "torch" not in imported and "fm_engine.training" not in imported
    assert snapshot(out) == before  # nothing deleted, written or cleaned
    assert live.poll() is None


def _api_call(name: str, tiny_data: Path, out: Path) -> Callable[[], object]:
    from fm_engine.training import TrainConfig, train
    from fm_engine.training.rehearsal import RehearsalConfig, run_rehearsal
    from fm_engine.training.scaling import run_scaling

    config = TrainConfig.from_dict(tiny_config_dict(tiny_data))
    return {
        "train": lambda: train(config, out),
        "train resume": lambda: train(config, out, resume=True),
        "run_scaling": lambda: run_scaling(config, "bulk_modulus", [1.0], out),
        "run_rehearsal": lambda: run_rehearsal(
            RehearsalConfig.from_dict({**tiny_config_dict(tiny_data), "replay_ratio": 0.2}), out, resume=True
        ),
    }[name]


@pytest.mark.parametrize("name", ["train", "train resume", "run_scaling", "run_rehearsal"])
def test_the_python_api_refuses_a_directory_in_use_too(name, tiny_data, tmp_path, holder):
    from fm_engine.run_lock import RunInUseError

    out = tmp_path / "busy"
    out.mkdir()
    (out / "last.ckpt").write_bytes(b"resume state of the live run")
    (out / ".fm-tmp-status.json.live").write_bytes(b"being written by the live run")
    live = holder(out)
    before = snapshot(out)
    with pytest.raises(RunInUseError, match=f"^{re.escape(str(out))} is in use by run pid {live.pid}; "):
        _api_call(name, tiny_data, out)()
    assert snapshot(out) == before


def test_the_lock_is_reentrant_in_one_process_and_freed_when_released(tmp_path):
    out = tmp_path / "run"
    assert lock_state(out) == (None, None)  # never locked: no lock file
    with hold_run(out):
        acquire(out)  # fm demo holds it, then train() takes it again
        release(out)
        held, owner = lock_state(out)
        assert held and owner.pid == os.getpid() and owner.start == process_start(os.getpid())
    assert (out / LOCK_FILE).exists()
    assert lock_state(out) == (False, None)  # free: a process that held it has ended


# ------------------------------------------------------------------------------------------ dead runs
def test_a_killed_run_is_reported_stopped_and_resumable_by_the_engine(killed_run):
    run = RunDirectory(killed_run)
    raw = run.read_status()
    status = run.checked_status()
    assert raw["state"] == "running"  # status.json itself still says so ...
    assert status["state"] == "failed" and status["stopped_unexpectedly"] and status["resumable"]
    assert status["message"] == (
        f"stopped unexpectedly (process {raw['pid']} ended without a final status: killed, crashed or the machine "
        f"restarted); resume with: fm train --out {killed_run} --resume"
    )
    assert run.read_status() == raw  # ... and reading it changed nothing


def test_a_killed_run_is_shown_failed_with_the_resume_command_in_the_workbench(killed_run):
    info = run_info(killed_run)
    assert info.state == "failed"
    assert info.status["stopped_unexpectedly"]
    assert f"resume with: fm train --out {killed_run} --resume" in info.status["message"]


def _status_with_pid(run_dir: Path, pid: int, **extra: object) -> RunDirectory:
    run = RunDirectory(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    run.update_status(state="running", pid=pid, name="planted", **extra)
    return run


def _free_lock(run_dir: Path) -> None:
    with hold_run(run_dir):  # leaves a lock file that nobody holds, as a killed run does
        pass


DEAD_CASES = {
    # lock file left by a killed run; the recorded pid now belongs to an unrelated program
    "lock free, pid reused": dict(lock="free", pid="bystander", start=None),
    # no lock file (a run from before locks); the pid's process started at another time
    "no lock, pid reused (start time differs)": dict(lock=None, pid="bystander", start="1"),
    # no lock file, the recorded process is gone
    "no lock, pid gone": dict(lock=None, pid="gone", start=None),
}


@pytest.mark.parametrize("case", list(DEAD_CASES))
def test_a_run_whose_process_is_gone_or_not_ours_is_dead(case, tmp_path, bystander):
    spec = DEAD_CASES[case]
    if spec["pid"] == "gone":
        ended = subprocess.Popen(["true"])
        ended.wait()
        pid = ended.pid
    else:
        pid = bystander.pid
    run = _status_with_pid(tmp_path / "run", pid, pid_start=spec["start"])
    if spec["lock"] == "free":
        _free_lock(run.path)
    assert run.process_gone() is True
    status = run.checked_status()
    assert status["state"] == "failed" and status["stopped_unexpectedly"]
    assert status["resumable"] is False
    assert status["message"].endswith("; no resume state was saved yet: start it again")
    assert run_info(run.path).state == "failed"
    assert bystander.poll() is None


def test_a_run_whose_lock_is_held_is_alive_whatever_its_status_pid(tmp_path, holder, bystander):
    run = _status_with_pid(tmp_path / "run", bystander.pid, pid_start="1")
    holder(run.path)
    assert run.process_gone() is False
    assert run.checked_status()["state"] == "running"
    assert run_info(run.path).state == "running"


# ------------------------------------------------------------------------------------------ Cancel
CANCEL_REFUSED = {
    "no lock file, status pid is another program": "none",
    "lock free (a killed run), status pid is another program": "free",
    "lock held by a process whose recorded start time is wrong": "forged",
}


@pytest.mark.parametrize("case", list(CANCEL_REFUSED))
def test_cancel_never_signals_a_process_that_is_not_the_run(case, tmp_path, bystander, holder):
    run = _status_with_pid(tmp_path / "run", bystander.pid)
    kind = CANCEL_REFUSED[case]
    live = None
    if kind == "free":
        _free_lock(run.path)
    elif kind == "forged":  # the lock file names the bystander, with a start time that is not its own
        live = holder(run.path)
        (run.path / LOCK_FILE).write_text(json.dumps({"pid": bystander.pid, "start": "1"}))
    assert cancel(run.path) is False
    with pytest.raises(subprocess.TimeoutExpired):
        bystander.wait(timeout=0.5)  # still alive: it was not signalled
    if live is not None:
        assert live.poll() is None


def test_cancel_on_a_killed_run_leaves_the_new_owner_of_its_pid_alone(killed_run, tmp_path, bystander):
    run = copy_run(killed_run, tmp_path / "run")
    run.update_status(pid=bystander.pid)  # the killed run's pid now belongs to an unrelated program
    assert cancel(run.path) is False
    with pytest.raises(subprocess.TimeoutExpired):
        bystander.wait(timeout=0.5)


def test_cancel_signals_the_process_that_holds_the_run(tmp_path, holder, bystander):
    run = _status_with_pid(tmp_path / "run", bystander.pid)  # a stale pid in status.json is not used
    live = holder(run.path)
    assert cancel(run.path) is True
    assert live.wait(timeout=CEILING_S) == -signal.SIGTERM
    assert bystander.poll() is None


# ------------------------------------------------------------------------------------------ stale temps
STALE = {
    "checkpoint folder of a killed save": ".checkpoint.tmp-k3j2",
    "safe_io temp file": ".fm-tmp-status.json.x8d",
    "resume state being written": ".last.ckpt.tmp",
    "rehearsal's staging copy": ".checkpoint.tmp",
}


@pytest.mark.parametrize("name", list(STALE.values()), ids=list(STALE))
def test_temps_a_killed_writer_left_are_cleaned_when_the_next_run_starts(name, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stale = run_dir / name
    if name.startswith(".checkpoint.tmp"):
        stale.mkdir()
        (stale / "model.safetensors").write_bytes(b"half")
    else:
        stale.write_bytes(b"half")
    (run_dir / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 0}\n')
    kept = snapshot(run_dir)
    with hold_run(run_dir):
        assert not stale.exists()
    del kept[name]
    kept = {k: v for k, v in kept.items() if not k.startswith(f"{name}/")}
    assert {k: v for k, v in snapshot(run_dir).items() if k != LOCK_FILE} == kept  # nothing else touched


# ------------------------------------------------------------------------------------------ resume
def test_resume_after_a_kill_counts_all_wall_time_and_logs_each_epoch_once(killed_run, tmp_path):
    run = copy_run(killed_run, tmp_path / "run")
    (run.path / ".checkpoint.tmp-left").mkdir()  # what a kill during a checkpoint save leaves
    (run.path / ".last.ckpt.tmp").write_bytes(b"half")
    earlier_s = run.read_status()["wall_time_s"]
    killed_at = max(epochs_logged(run))
    saved = yaml.safe_load(run.config_path.read_text())
    saved["trainer"]["max_epochs"] = killed_at + 2
    run.config_path.write_text(yaml.safe_dump(saved))
    started = time.monotonic()
    resumed = subprocess.run([*FM, "train", "--out", str(run.path), "--resume", "--no-progress"],
                             capture_output=True, text=True, timeout=CEILING_S)  # fmt: skip
    resumed_s = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not (run.path / ".checkpoint.tmp-left").exists() and not (run.path / ".last.ckpt.tmp").exists()
    card = json.loads((run.path / "checkpoint" / "card.json").read_text())["training"]
    assert card["epochs_run"] == killed_at + 2 and card["segments"] == 2
    assert earlier_s < card["wall_time_s"] <= earlier_s + resumed_s  # both segments, not only the resumed one
    assert run.read_status()["wall_time_s"] >= card["wall_time_s"] - 0.01
    epochs = epochs_logged(run)
    assert epochs == list(range(killed_at + 2))  # one record per epoch, in order
    step_epochs = [r["epoch"] for r in run.read_metrics() if r["kind"] == "step"]
    assert step_epochs == sorted(step_epochs)  # the killed segment's steps past the resume point are gone


def test_a_resumed_run_drops_only_the_records_it_repeats(tmp_path):
    run = RunDirectory(tmp_path / "run")
    for epoch in (0, 1, 2, 3):
        run.append_metrics({"kind": "step", "epoch": epoch, "step": epoch * 10})
        run.append_metrics({"kind": "epoch", "epoch": epoch})
    assert run.drop_metrics_from(2) == 4
    assert [(r["kind"], r["epoch"]) for r in run.read_metrics()] == [
        ("step", 0), ("epoch", 0), ("step", 1), ("epoch", 1)
    ]  # fmt: skip
    assert run.drop_metrics_from(2) == 0


def test_the_train_page_shows_a_killed_run_as_stopped_with_its_resume_command(killed_run, workspace):
    run_dir = copy_run(killed_run, workspace / "runs" / "killed").path
    at = open_page("train", **{WATCHED_RUN: str(run_dir)})
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("The run stopped unexpectedly (process ") and
               w.endswith(f"resume with: fm train --out {run_dir} --resume") for w in warnings), warnings  # fmt: skip
    assert not [b for b in at.button if b.label == "Cancel run"]  # nothing to cancel
    assert RunDirectory(run_dir).read_status()["state"] == "running"  # the page changed no file


def test_a_file_given_as_run_folder_is_a_clear_error_and_left_alone(tmp_path):
    from fm_engine.run_lock import acquire

    a_file = tmp_path / "run.csv"
    a_file.write_text("formula,target\nFe,1\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(a_file))}: a file is there; expected a run folder$"):
        acquire(a_file)
    assert a_file.read_text() == "formula,target\nFe,1\n"
