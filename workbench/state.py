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


def get(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, default)


def put(key: str, value: Any) -> None:
    st.session_state[key] = value


def active_checkpoint() -> Path | None:
    value = get(ACTIVE_CHECKPOINT)
    return Path(value) if value else None
