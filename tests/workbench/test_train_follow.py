"""A run the user started is followed until it ends: after a reload (a new session with the same page address) the
Train monitor shows that run, not a newer one of the workspace, and its "ready" message once it is done."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from fm_engine.training.run_files import RunDirectory, now_iso
from tests.ceiling import CEILING_S
from tests.workbench.conftest import HOME, open_page
from workbench.components.train_form import SCHEDULE_HAND
from workbench.runs import run_info
from workbench.state import RUN_PARAM, WATCHED_RUN


def start_tiny_run(at: AppTest, name: str) -> Path:
    """Fill the Train form for a 2-epoch run of one small task and start it; returns its folder."""
    at.text_input(key="train_name").input(name)
    at.checkbox(key="train_task_hea_phase").check()
    at.text_input(key="train_hidden_dims").input("16")
    at.radio(key="train_schedule").set_value(SCHEDULE_HAND)
    at.number_input(key="train_epochs").set_value(2)
    at.toggle(key="train_autoencoder").set_value(False)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    return Path(at.session_state[WATCHED_RUN])


def monitor_headline(at: AppTest) -> str:
    """The monitor's first line: ``<icon> <run>: <state>``."""
    return next(m.value for m in at.markdown if m.value.startswith("**:material/"))


def test_a_reload_mid_run_follows_the_same_run_until_it_is_ready(workspace: Path):
    at = open_page("train")
    run_dir = start_tiny_run(at, "mine")
    assert at.query_params.get(RUN_PARAM) == run_dir.name
    other = workspace / "runs" / "someone-elses"  # a newer run of the workspace, queued (e.g. another user's)
    RunDirectory(other).update_status(state="queued", name="someone-elses", message="starting", created_at=now_iso())

    reloaded = AppTest.from_file(str(HOME), default_timeout=CEILING_S)  # a reload: new session, same address
    reloaded.query_params.update(at.query_params)
    reloaded.run()
    reloaded.switch_page("../pages/train.py").run()
    assert not reloaded.exception
    assert f"{run_dir.name}: " in monitor_headline(reloaded), monitor_headline(reloaded)

    deadline = time.monotonic() + CEILING_S
    while run_info(run_dir).state in ("queued", "running"):
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.3)
    reloaded.run()
    assert f"{run_dir.name}: done" in monitor_headline(reloaded)
    ready = "\n".join(s.value for s in reloaded.success)
    assert f"**{run_dir.name}** is ready" in ready and "now the active model" in ready, ready


def test_a_refused_run_says_the_monitor_still_shows_the_earlier_run(workspace_with_model: Path):
    at = open_page("train", **{WATCHED_RUN: str(workspace_with_model)})
    next(b for b in at.button if b.label == "Start training").click().run()  # no task ticked: refused
    refused = "\n".join(e.value for e in at.error)
    assert "Select at least one task" in refused
    assert (
        f"Nothing was started: the live monitor below still shows the earlier run **{workspace_with_model.name}**"
        in (refused)
    )
    assert f"{workspace_with_model.name}: done" in monitor_headline(at)
