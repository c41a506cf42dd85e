"""Shared, cached resources of the workbench (models are loaded once per checkpoint version)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fm_engine.cards import CARD_FILE
from fm_engine.checkpoints import CheckpointError, LoadedCheckpoint, load_checkpoint
from fm_engine.foundation import foundation_checkpoint_path, foundation_installed
from workbench.runs import list_runs

FOUNDATION_LABEL = "Foundation (shipped)"  # the pickers' label of the installed foundation, with its task count


@st.cache_resource(max_entries=4, show_spinner="Loading model ...")
def _load(path: str, version: float) -> LoadedCheckpoint:
    return load_checkpoint(path)


def get_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """The checkpoint at ``path`` (run or checkpoint folder), cached until its weights change."""
    directory = Path(path)
    weights = directory / "checkpoint" / "model.safetensors"
    if not weights.exists():
        weights = directory / "model.safetensors"
    version = weights.stat().st_mtime if weights.exists() else 0.0
    return _load(str(directory), version)


def active_checkpoint_or_explain() -> tuple[Path, LoadedCheckpoint] | None:
    """The sidebar's active checkpoint and its folder, after one line saying which model it is
    (:func:`workbench.active_model.show_model_line`); or None after telling the user why there is none."""
    from workbench import state
    from workbench.active_model import show_model_line
    from workbench.paths import page

    path = state.active_checkpoint()
    if path is None:
        st.info("No trained model yet. Train the demo model on the Overview page (a few minutes), then come back.")
        st.page_link(page("overview.py"), label="Overview: train the demo model", icon=":material/home:")
        return None
    show_model_line(path)
    try:
        return path, get_checkpoint(path)
    except CheckpointError as error:
        st.error(f"Cannot load the active checkpoint {path}: {error}")
        return None


def workspace_checkpoints() -> dict[str, Path]:
    """Finished runs of the workspace that hold a checkpoint: label -> run folder, the most recently *finished*
    first (the default active model; not the most recently started run)."""
    runs = [run for run in list_runs() if run.has_checkpoint]
    runs.sort(key=lambda run: run.status.get("finished_at") or run.status.get("created_at") or "", reverse=True)
    return {run.name: run.path for run in runs}


@st.cache_data(max_entries=4, show_spinner=False)
def _foundation_label(path: str, version: float) -> str:
    from workbench.components.cards import read_card

    card, _ = read_card(Path(path))
    n = len(card.tasks) if card is not None else 0
    return f"{FOUNDATION_LABEL}: {n} DFT properties" if n else FOUNDATION_LABEL


def foundation_checkpoint() -> tuple[str, Path] | None:
    """The installed foundation (:func:`fm_engine.foundation.foundation_checkpoint_path`) as (label, folder), e.g.
    ("Foundation (shipped): 23 DFT properties", ...); None when none is installed."""
    if not foundation_installed():
        return None
    path = foundation_checkpoint_path()
    card = path / CARD_FILE
    return _foundation_label(str(path), card.stat().st_mtime if card.exists() else 0.0), path


def is_foundation(path: str | Path | None) -> bool:
    """True for the installed foundation's folder (shown in the pickers, never deleted)."""
    return path is not None and Path(path).resolve() == foundation_checkpoint_path().resolve()


def available_checkpoints() -> dict[str, Path]:
    """Every checkpoint the pickers offer: the workspace's finished runs (newest finished first), then the installed
    foundation (read-only; it is not in the workspace); label -> folder."""
    checkpoints = workspace_checkpoints()
    foundation = foundation_checkpoint()
    if foundation is not None:
        checkpoints[foundation[0]] = foundation[1]
    return checkpoints


__all__ = [
    "CheckpointError", "active_checkpoint_or_explain", "available_checkpoints", "foundation_checkpoint",
    "get_checkpoint", "is_foundation", "workspace_checkpoints",
]  # fmt: skip
