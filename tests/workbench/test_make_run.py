"""`make run` on a first visit: a fresh home folder, no terminal. Streamlit must start serving without asking
for an e-mail address (its first-run prompt blocks a terminal and, without one, ends `make` with error 255)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.ceiling import CEILING_S
from tests.workbench.conftest import ROOT, _healthy, free_port


def test_make_run_starts_without_a_terminal_on_a_fresh_home(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    port = free_port()
    venv = Path(sys.executable).parent.parent  # the project's .venv (or the one running the tests)
    home = tmp_path / "home"  # no ~/.streamlit: Streamlit's first run
    home.mkdir()
    env = {
        **os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1",
        "STREAMLIT_SERVER_PORT": str(port), "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",  # a free port for the test
    }  # fmt: skip
    env.pop("MAKEFLAGS", None)
    # the Makefile's own `run` recipe, with this venv (STAMP= skips the install step, already done here)
    command = [make, "--no-print-directory", "run", f"VENV={venv}", "STAMP="]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + CEILING_S
            while not _healthy(url) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.3)
            serving = _healthy(url)
            log.seek(0)
            output = log.read().decode(errors="replace")
            assert serving, f"`make run` did not serve (exit code {process.poll()}):\n{output}"
            assert "Email" not in output, output
            assert not (home / ".streamlit" / "credentials.toml").exists()
        finally:
            _end(process)


def _end(process: subprocess.Popen) -> None:
    """End `make` and the server it started (their own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue
