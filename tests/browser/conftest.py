"""Browser end-to-end tests: Playwright driving Debian's Chromium against a real `streamlit run`.

The browser is found at $FM_CHROMIUM or /usr/bin/chromium (`.ci/run` installs Debian's chromium).
Without it the tests are skipped locally, and fail under CI=true: a browser test never passes silently.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workbench.conftest import ROOT, running_streamlit

ARTIFACTS = ROOT / "test-artifacts"


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


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A workbench server on a fresh, empty workspace; yields (base URL, workspace)."""
    workspace = tmp_path_factory.mktemp("browser_workspace")
    env = {"FM_WORKSPACE": str(workspace), "FM_DEMO_MAX_EPOCHS": "8"}
    try:
        with running_streamlit(env) as url:
            yield url, workspace
    finally:
        stop_runs(workspace)


def stop_runs(workspace: Path) -> None:
    """Training processes started by the tests live in their own sessions: end them with the tests."""
    import signal

    for status in workspace.glob("runs/*/status.json"):
        pid = json.loads(status.read_text()).get("pid")
        try:
            os.killpg(os.getpgid(int(pid)), signal.SIGKILL)
        except (ProcessLookupError, TypeError, ValueError, PermissionError):
            continue


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)  # type: ignore[attr-defined]
    page = context.new_page()
    yield page
    context.close()


def wait_for_app(page: object, timeout_ms: int = 60_000) -> None:
    """Until the script has run. After an interaction, give the rerun a moment to start first."""
    page.wait_for_timeout(400)  # type: ignore[attr-defined]
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)  # type: ignore[attr-defined]


def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
