"""The active model: the checkpoint Predict and Inverse design use.

The user chooses it in the sidebar; the choice is kept in the session (it survives page switches) and in the page
address (``?model=<run folder>``, ``?model=foundation``), so it survives a reload too. Until the user chooses, the
active model is the newest *finished* checkpoint of the workspace (the shipped foundation when there is none), so a
run that finishes (e.g. the demo) becomes active by itself. Every page that uses the model says which one it is in
one line (:func:`model_line`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from fm_engine.training.run_files import RunDirectory
from workbench import state
from workbench.components.train_form import local_time
from workbench.resources import available_checkpoints, is_foundation

MODEL_PARAM = "model"  # the page address's query parameter holding the user's choice
FOUNDATION_TOKEN = "foundation"  # its value for the shipped foundation (runs: their folder name)


def token(path: Path) -> str:
    """The address value of a checkpoint folder: ``foundation`` or the run folder's name."""
    return FOUNDATION_TOKEN if is_foundation(path) else Path(path).name


@dataclass(frozen=True)
class ActiveModel:
    """The sidebar's resolved choice: its picker label, folder, and whether the user chose it (False: the newest
    finished checkpoint, by default)."""

    label: str
    path: Path
    chosen: bool


def resolve(checkpoints: Mapping[str, Path], chosen: str | None) -> ActiveModel | None:
    """The active model among ``checkpoints`` (picker label -> folder, the newest finished first): the one whose
    :func:`token` is ``chosen`` when it is still there, else the first; None when there is none."""
    for label, path in checkpoints.items():
        if chosen and token(path) == chosen:
            return ActiveModel(label, path, chosen=True)
    first = next(iter(checkpoints.items()), None)
    return ActiveModel(first[0], first[1], chosen=False) if first else None


def chosen_token() -> str | None:
    """The user's explicit choice: from the session, else (a new session after a reload) from the address."""
    value = state.get(state.CHOSEN_MODEL)
    if value is None:
        value = st.query_params.get(MODEL_PARAM)
    return str(value) if value else None


def remember_choice(path: Path | None) -> None:
    """Keep the user's choice (None: none) in the session and the page address."""
    value = token(path) if path is not None else None
    state.put(state.CHOSEN_MODEL, value or "")
    if value:
        st.query_params[MODEL_PARAM] = value
    elif MODEL_PARAM in st.query_params:
        del st.query_params[MODEL_PARAM]


def finished_text(path: Path) -> str:
    """``finished 2026-11-30 14:02`` (server's local time) for a run folder; a description for the foundation."""
    if is_foundation(path):
        return "pretrained, shipped with fm_engine"
    finished = RunDirectory(path).read_status().get("finished_at")
    return f"finished {local_time(finished)}" if finished else "finished"


def model_line(path: Path, *, chosen: bool) -> str:
    """The one line every page that uses the active model shows, e.g. ``Model: **demo** (finished 2026-11-30
    14:02; the newest finished model). Change it in the sidebar under *Active checkpoint*.``"""
    why = "chosen by you" if chosen else "the newest finished model"
    name = next((label for label, folder in available_checkpoints().items() if folder == path), path.name)
    return f"Model: **{name}** ({finished_text(path)}; {why}). Change it in the sidebar under *Active checkpoint*."


def show_model_line(path: Path) -> None:
    """Show :func:`model_line` for the active model ``path``."""
    st.caption(model_line(path, chosen=bool(chosen_token()) and token(path) == chosen_token()))
