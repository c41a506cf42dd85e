"""`fm train` as a separate OS process: SIGTERM cancels, a killed run resumes, DDP with 2 processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from fm_engine.checkpoints import load_checkpoint
from fm_engine.training import RunDirectory
from fm_engine.training.callbacks import WeightAveraging
from tests.ceiling import CEILING_S
from tests.conftest import tiny_config_dict


def start_training(config: dict, out: Path, *extra: str) -> subprocess.Popen:
    config_file = out.parent / f"{out.name}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "fm_engine.cli", "train", "--config", str(config_file),
               "--out", str(out), "--no-progress", *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float = CEILING_S) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def resume(run: RunDirectory, *, max_epochs: int) -> None:
    """``fm train --resume`` with fewer epochs left (max_epochs shortened in the saved config)."""
    saved = yaml.safe_load(run.config_path.read_text())
    saved["trainer"]["max_epochs"] = max_epochs
    run.config_path.write_text(yaml.safe_dump(saved))
    resumed = subprocess.run(
        [sys.executable, "-m", "fm_engine.cli", "train", "--out", str(run.path), "--resume", "--no-progress"],
        capture_output=True, text=True, timeout=CEILING_S,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def epochs_logged(run: RunDirectory) -> list[int]:
    return [r["epoch"] for r in run.read_metrics() if r["kind"] == "epoch"]


def averaged_updates_and_steps(run: RunDirectory) -> tuple[int, int]:
    """The weight average's update count and the optimizer step count saved in ``last.ckpt``."""
    state = torch.load(run.resume_path, weights_only=True)
    average = state["callbacks"][WeightAveraging(None).state_key]
    return average["updates"], state["global_step"]


def test_sigterm_cancels_then_resume_finishes(tiny_data, tmp_path):
    out = tmp_path / "run"
    run = RunDirectory(out)
    config = tiny_config_dict(tiny_data, max_epochs=400, patience=400, ema_decay=0.95)
    process = start_training(config, out)
    wait_for(lambda: len(epochs_logged(run)) >= 2 and run.resume_path.exists())
    assert run.read_status()["state"] == "running"
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=CEILING_S)
    assert process.returncode == 143, output
    assert run.read_status()["state"] == "cancelled"
    assert run.resume_path.exists() and not run.checkpoint_path.exists()
    done_before = max(epochs_logged(run))

    resume(run, max_epochs=done_before + 3)
    assert run.read_status()["state"] == "done"
    epochs = epochs_logged(run)
    assert max(epochs) > done_before  # continued where it stopped, not from epoch 0
    assert epochs == list(range(len(epochs)))  # one record per epoch across both segments
    updates, steps = averaged_updates_and_steps(run)
    assert updates == steps > 0  # the weight average carried on from the saved one
    load_checkpoint(out)


def test_a_killed_run_resumes_from_its_last_epoch(tiny_data, tmp_path):
    out = tmp_path / "run"
    run = RunDirectory(out)
    process = start_training(tiny_config_dict(tiny_data, max_epochs=400, patience=400), out)
    wait_for(lambda: len(epochs_logged(run)) >= 2 and run.resume_path.exists())
    process.kill()  # SIGKILL: no chance to clean up
    process.communicate(timeout=CEILING_S)
    assert not run.checkpoint_path.exists()
    assert not list(out.glob(".checkpoint*"))  # never half a checkpoint
    killed_at = max(epochs_logged(run))
    resume(run, max_epochs=killed_at + 2)
    assert epochs_logged(run) == list(range(killed_at + 2))  # the repeated epochs are logged once
    assert json.loads((out / "checkpoint" / "card.json").read_text())["training"]["epochs_run"] == killed_at + 2


def test_ddp_with_two_cpu_processes(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    process = start_training(tiny_config_dict(tiny_data, max_epochs=2), out, "--devices", "2", "--strategy", "ddp")
    output, _ = process.communicate(timeout=CEILING_S)
    assert process.returncode == 0, output
    run = RunDirectory(out)
    assert run.read_status()["state"] == "done"
    card = json.loads((out / "checkpoint" / "card.json").read_text())
    assert card["training"]["devices"] == 2 and card["training"]["strategy"] == "ddp"
    assert epochs_logged(run) == [0, 1]  # only rank 0 writes the run files
    checkpoint = load_checkpoint(out)
    assert checkpoint.model.tasks.keys() == {"bulk_modulus", "hea_phase", "yield_strength"}
    assert os.environ.get("LOCAL_RANK") is None
