"""The workspace folder: runs, checkpoints and design results.

``$FM_WORKSPACE`` if set, else ``$XDG_DATA_HOME/fm_engine`` (default ``~/.local/share/fm_engine``).
"""

from __future__ import annotations

import os
from pathlib import Path


def workspace_dir() -> Path:
    explicit = os.environ.get("FM_WORKSPACE")
    if explicit:
        path = Path(explicit).expanduser()
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "fm_engine"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    path = workspace_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


DEMO_RUN_NAME = "demo"


def demo_run_dir() -> Path:
    return runs_dir() / DEMO_RUN_NAME
