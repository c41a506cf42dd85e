"""Shared, cached resources of the workbench (models are loaded once per checkpoint version)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fm_engine.checkpoints import CheckpointError, LoadedCheckpoint, load_checkpoint
from workbench.runs import list_runs


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
    """The sidebar's active checkpoint and its folder; or None after telling the user why there is none."""
    from workbench import state
    from workbench.paths import page

    path = state.active_checkpoint()
    if path is None:
        st.info("No trained model yet. Train the demo model on the Overview page (about a minute), then come back.")
        st.page_link(page("overview.py"), label="Overview: train the demo model", icon=":material/home:")
        return None
    try:
        return path, get_checkpoint(path)
    except CheckpointError as error:
        st.error(f"Cannot load the active checkpoint {path}: {error}")
        return None


def available_checkpoints() -> dict[str, Path]:
    """Finished runs of the workspace that hold a checkpoint: label -> run folder (newest first)."""
    return {run.name: run.path for run in list_runs() if run.has_checkpoint}


__all__ = ["CheckpointError", "active_checkpoint_or_explain", "available_checkpoints", "get_checkpoint"]
