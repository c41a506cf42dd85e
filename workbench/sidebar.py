"""The shared sidebar: the active model (picker; see :mod:`workbench.active_model`) and its tasks with units."""

from __future__ import annotations

import streamlit as st

from workbench import state
from workbench.active_model import chosen_token, finished_text, remember_choice, resolve
from workbench.resources import CheckpointError, available_checkpoints, get_checkpoint, is_foundation

PICKER = "fm_sidebar_checkpoint"


def _picked() -> None:
    """The user picked a model (an ``on_change``): remember it as their explicit choice."""
    path = available_checkpoints().get(st.session_state.get(PICKER))
    remember_choice(path)


def render_sidebar() -> None:
    with st.sidebar:
        st.markdown("### Model")
        checkpoints = available_checkpoints()
        active = resolve(checkpoints, chosen_token())
        if active is None:
            st.caption("No trained model yet: train the demo model on the Overview page.")
            state.put(state.ACTIVE_CHECKPOINT, None)
            return
        remember_choice(active.path if active.chosen else None)  # back into the address after a page switch
        st.session_state[PICKER] = active.label
        st.selectbox("Active checkpoint", list(checkpoints), key=PICKER, on_change=_picked)
        state.put(state.ACTIVE_CHECKPOINT, str(active.path))
        why = "chosen by you" if active.chosen else "the newest finished model, until you choose one"
        st.caption(f"{finished_text(active.path).capitalize()}; {why}. Predict and Inverse design use it.")
        if is_foundation(active.path):
            st.caption(f"{active.label}: the pretrained model shipped with fm_engine (read-only).")
        try:
            checkpoint = get_checkpoint(active.path)
        except CheckpointError as error:
            st.error(f"Cannot load this checkpoint: {error}")
            return
        lines = []
        for task in checkpoint.model.tasks.values():
            unit = task.unit or (", ".join(task.classes or []) if task.classes else "")
            kind = {"regression": "", "classification": " (classes)", "kernel_regression": f" vs t ({task.t_unit})"}
            lines.append(f"- **{task.name}**{kind[task.type.value]}: {unit}")
        st.markdown("\n".join(lines))
