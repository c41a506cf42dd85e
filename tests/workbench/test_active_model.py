"""The active model is explicit and sticky: by default the newest *finished* checkpoint (not the most recently
started run), the user's choice kept across page switches, newly finished runs and reloads (the page address), and
named on every page that uses it."""

from __future__ import annotations

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from fm_engine.training.run_files import RunDirectory
from tests.ceiling import CEILING_S
from tests.workbench.conftest import HOME
from workbench.sidebar import PICKER


def finished_run(workspace: Path, tiny_run: Path, name: str, *, created: str, finished: str) -> Path:
    """A copy of the tiny trained run named ``name``, started at ``created`` and finished at ``finished`` (UTC)."""
    target = workspace / "runs" / name
    shutil.copytree(tiny_run, target, ignore=shutil.ignore_patterns(".run.lock"))
    RunDirectory(target).update_status(name=name, created_at=created, finished_at=finished)
    return target


def two_runs(workspace: Path, tiny_run: Path) -> None:
    """``started-last`` was started last but finished first; ``finished-last`` finished last."""
    finished_run(workspace, tiny_run, "finished-last", created="2026-01-01T10:00:00+00:00",
                 finished="2026-01-01T10:30:00+00:00")  # fmt: skip
    finished_run(workspace, tiny_run, "started-last", created="2026-01-01T10:10:00+00:00",
                 finished="2026-01-01T10:20:00+00:00")  # fmt: skip


def session(**query: str) -> AppTest:
    """A new browser session (a first visit or a reload) on Home, with ``query`` in the page address."""
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    at.query_params.update(query)
    at.run()
    assert not at.exception
    return at


def picked(at: AppTest) -> str:
    return at.sidebar.selectbox(key=PICKER).value


def model_line(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Model: "))


def test_default_is_the_newest_finished_checkpoint_named_on_predict_and_design(workspace: Path, tiny_run: Path):
    two_runs(workspace, tiny_run)
    at = session()
    assert picked(at) == "finished-last"
    for page in ("predict", "design"):
        at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception
        line = model_line(at)
        assert "**finished-last**" in line and "the newest finished model" in line, line
        assert "finished 2026-01-01" in line and "sidebar" in line, line
    # a run that finishes later becomes the active model by itself (nobody chose one)
    finished_run(workspace, tiny_run, "demo", created="2026-01-01T09:00:00+00:00", finished="2026-01-01T11:00:00+00:00")
    at.run()
    assert picked(at) == "demo" and "**demo**" in model_line(at)


def test_the_users_choice_survives_page_switches_new_runs_and_reloads(workspace: Path, tiny_run: Path):
    two_runs(workspace, tiny_run)
    at = session()
    at.sidebar.selectbox(key=PICKER).set_value("started-last").run()
    assert at.query_params.get("model") == "started-last"
    at.switch_page("../pages/design.py").run()
    assert picked(at) == "started-last"
    assert "**started-last**" in model_line(at) and "chosen by you" in model_line(at)
    finished_run(workspace, tiny_run, "demo", created="2026-01-01T09:00:00+00:00", finished="2026-01-01T11:00:00+00:00")
    at.switch_page("../pages/predict.py").run()
    assert picked(at) == "started-last" and "**started-last**" in model_line(at)

    reloaded = session(**at.query_params)  # a reload: a new session with the same address
    assert picked(reloaded) == "started-last"
    assert picked(session()) == "demo"  # a new tab without the address: the newest finished model

    shutil.rmtree(workspace / "runs" / "started-last")  # the chosen model deleted: back to the default
    at.run()
    assert picked(at) == "demo" and "model" not in at.query_params
