"""Browser end-to-end tests: Playwright driving Debian's Chromium against a real `streamlit run`.

The browser is found at $FM_CHROMIUM or /usr/bin/chromium (`.ci/run` installs Debian's chromium).
Without it the tests are skipped locally, and fail under CI=true: a browser test never passes silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fm_engine.foundation import FOUNDATION_ENV
from fm_engine.training.run_files import ACTIVE_STATES, FINAL_STATES, RunDirectory
from tests.ceiling import CEILING_S
from tests.workbench.conftest import ROOT, running_streamlit

ARTIFACTS = ROOT / "test-artifacts"
CEILING_MS = CEILING_S * 1000  # Playwright timeouts are in ms; waits end on states, this only ends a hang


def chromium_path() -> str | None:
    for candidate in (os.environ.get("FM_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        message = "Chromium not found (install Debian's chromium or set FM_CHROMIUM)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"],
        )  # fmt: skip
        yield browser
        browser.close()


def serve(workspace: Path, *, foundation: Path | None = None) -> Iterator[tuple[str, Path]]:
    """A workbench server on ``workspace``, with ``foundation`` installed (None: none, tests/conftest.py); yields
    (base URL, workspace); ends the runs the test started."""
    env = {"FM_WORKSPACE": str(workspace), "FM_DEMO_MAX_EPOCHS": "8"}
    if foundation is not None:
        env[FOUNDATION_ENV] = str(foundation)
    try:
        with running_streamlit(env) as url:
            yield url, workspace
    finally:
        stop_runs(workspace)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A workbench server of this test alone, on a fresh, empty workspace; yields (base URL, workspace)."""
    yield from serve(tmp_path / "workspace")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model as ``fm demo`` trains it (2 epochs): what a workspace holds after its first visit."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    command = [sys.executable, "-m", "fm_engine.cli", "demo", "--out", str(out), "--no-progress"]
    env = {**os.environ, "FM_DEMO_MAX_EPOCHS": "2"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=CEILING_S)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture
def app_with_demo(tmp_path: Path, demo_run: Path) -> Iterator[tuple[str, Path]]:
    """A workbench server of this test alone whose workspace holds a trained demo model (its own copy)."""
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_run, workspace / "runs" / "demo", ignore=shutil.ignore_patterns(".run.lock"))
    yield from serve(workspace)


def stop_runs(workspace: Path) -> None:
    """Training processes started by the tests live in their own sessions: end those still active with the
    tests (never a finished run's recorded pid: that process is gone and its number may belong to another)."""
    import signal

    for status_file in workspace.glob("runs/*/status.json"):
        status = RunDirectory(status_file.parent).read_status()
        if status.get("state") not in ACTIVE_STATES:
            continue
        try:
            group = os.getpgid(int(status.get("pid")))
            if group != os.getpgid(0):
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, TypeError, ValueError, PermissionError):
            continue


def wait_for_run(run_dir: Path) -> dict[str, Any]:
    """The run's status once it has ended (done, failed or cancelled), however long the machine takes."""
    deadline = time.monotonic() + CEILING_S
    while True:
        status = RunDirectory(run_dir).read_status()  # {} until the run has written it
        if status.get("state") in FINAL_STATES:
            return status
        assert time.monotonic() < deadline, f"{run_dir}: still {status.get('state')} after {CEILING_S:.0f} s"
        time.sleep(0.5)


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)  # type: ignore[attr-defined]
    page = context.new_page()
    yield page
    context.close()


def wait_for_app(page: object, timeout_ms: float = CEILING_MS) -> None:
    """Until the script has run. After an interaction, give the rerun a moment to start first."""
    page.wait_for_timeout(400)  # type: ignore[attr-defined]
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)  # type: ignore[attr-defined]


def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
