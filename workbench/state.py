"""Per-user choices in ``st.session_state`` under keys no widget owns (they survive page switches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

ACTIVE_CHECKPOINT = "fm_active_checkpoint"  # str path of the active model's folder (set by the sidebar)
CHOSEN_MODEL = "fm_chosen_model"  # the user's explicit sidebar choice (workbench.active_model.token); "": none
DESIGN_RESULT = "fm_design_result"  # the last DesignResult of this session
DESIGN_CONFIG = "fm_design_config"  # the last submitted DesignConfig (as a dict)
UPLOADED_TASKS = "fm_uploaded_tasks"  # {task name: {"spec": TaskSpec dict, "frame": DataFrame}}
WATCHED_RUN = "fm_watched_run"  # str path of the run the Train page monitors
RUN_PARAM = "run"  # the page address's query parameter naming the watched run's folder (survives a reload)


def get(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, default)


def put(key: str, value: Any) -> None:
    st.session_state[key] = value


def watch(run_dir: Path) -> None:
    """Follow ``run_dir`` (a run folder of the workspace) in the Train page's monitor, in this session and the page
    address, so a reload follows the same run."""
    put(WATCHED_RUN, str(run_dir))
    st.query_params[RUN_PARAM] = Path(run_dir).name


def watched(runs: Path) -> Path | None:
    """The run folder this session follows: from the session, else (a reload) the address's ``run`` under ``runs``
    (the workspace's runs folder); None when there is none or it no longer exists."""
    value = get(WATCHED_RUN)
    if not value:
        name = str(st.query_params.get(RUN_PARAM) or "")
        value = str(runs / name) if name and Path(name).name == name and not name.startswith(".") else None
    return Path(value) if value and (Path(value) / "status.json").exists() else None


def active_checkpoint() -> Path | None:
    value = get(ACTIVE_CHECKPOINT)
    return Path(value) if value else None
