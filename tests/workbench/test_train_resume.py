"""A cancelled run is resumed from the Train page: it goes on from its saved state in the same folder, the monitor
follows it, and it finishes with its model."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fm_engine.training.run_files import RunDirectory
from tests.ceiling import CEILING_S
from tests.workbench.conftest import open_page
from workbench.components.train_form import SCHEDULE_HAND, FormValues, build_config
from workbench.runs import cancel, resumable, run_info, start_training
from workbench.state import WATCHED_RUN

EPOCHS = 20  # enough that the run is cancelled long before its end; a tiny model makes them quick


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CEILING_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def cancelled_run() -> Path:
    """A run of the Train form's kind, cancelled after its first epoch (its training state saved)."""
    values = FormValues(name="resumable", bundled=["hea_phase"], hidden_dims="16", autoencoder=False,
                        schedule=SCHEDULE_HAND, max_epochs=EPOCHS, patience=EPOCHS)  # fmt: skip
    run_dir = start_training(build_config(values, classification=["hea_phase"]), values.name)
    run = RunDirectory(run_dir)
    wait_for(lambda: (run.read_status().get("epoch") or 0) >= 1 and run.resume_path.exists(), "the first epoch")
    assert cancel(run_dir)
    wait_for(lambda: run_info(run_dir).state == "cancelled", "the run to be cancelled")
    return run_dir


def test_a_cancelled_run_is_resumed_from_the_train_page_and_finishes(workspace: Path):
    run_dir = cancelled_run()
    assert resumable(run_info(run_dir))
    stopped_at = RunDirectory(run_dir).read_status()["epoch"]
    assert stopped_at < EPOCHS
    at = open_page("train", **{WATCHED_RUN: str(run_dir)})
    next(b for b in at.button if b.label == "Resume run").click().run()
    assert not at.exception and not at.error
    assert run_info(run_dir).state in ("queued", "running")  # at once, while the process starts
    assert not [b for b in at.button if b.label == "Resume run"]

    wait_for(lambda: run_info(run_dir).state not in ("queued", "running"), "the resumed run to end")
    status = RunDirectory(run_dir).read_status()
    assert status["state"] == "done" and status["epoch"] == EPOCHS and status["segments"] == 2, status
    at.run()
    assert any(f"**{run_dir.name}** is ready" in s.value for s in at.success)
    assert [p.name for p in (workspace / "runs").iterdir() if p.is_dir()] == [run_dir.name]  # the same folder
