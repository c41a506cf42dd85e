import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.ceiling import CEILING_S

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "workbench" / "Home.py"


def open_page(page: str, **session: object) -> AppTest:
    """An AppTest session that starts at Home (as a user does), sets ``session`` values, then opens
    ``pages/<page>.py``; fails on any exception."""
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    at.run()
    for key, value in session.items():
        at.session_state[key] = value
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception
    return at


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_streamlit(env: dict[str, str] | None = None, *, script: Path = HOME) -> Iterator[str]:
    """Run `streamlit run workbench/Home.py` (or ``script``) on a free localhost port; yield its base URL, then
    stop it."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false", "--server.enableAgentApi", "true",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + CEILING_S
            while not _healthy(url):
                if process.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    pytest.fail(f"streamlit did not start:\n{log.read().decode(errors='replace')}")
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real workbench server on an empty workspace, shared by the tests of a session."""
    with running_streamlit({"FM_WORKSPACE": str(tmp_path_factory.mktemp("server_workspace"))}) as url:
        yield url


@pytest.fixture(autouse=True)
def _hermetic_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No workbench test reads or writes the user's real workspace."""
    monkeypatch.setenv("FM_WORKSPACE", str(tmp_path / "default_workspace"))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace (FM_WORKSPACE) and clean Streamlit caches."""
    import streamlit as st

    monkeypatch.setenv("FM_WORKSPACE", str(tmp_path / "workspace"))
    st.cache_resource.clear()
    st.cache_data.clear()
    return tmp_path / "workspace"


@pytest.fixture
def workspace_with_model(workspace: Path, tiny_run: Path) -> Path:
    """A workspace holding one finished run (a copy of the session's tiny trained run) named 'tiny'."""
    import shutil

    target = workspace / "runs" / "tiny"
    shutil.copytree(tiny_run, target)
    return target
