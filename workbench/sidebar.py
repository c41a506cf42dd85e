"""The shared sidebar: the active checkpoint (picker) and its tasks with units."""

from __future__ import annotations

import streamlit as st

from workbench import state
from workbench.resources import CheckpointError, available_checkpoints, get_checkpoint, is_foundation


def render_sidebar() -> None:
    with st.sidebar:
        st.markdown("### Model")
        checkpoints = available_checkpoints()
        if not checkpoints:
            st.caption("No trained model yet: train the demo model on the Overview page.")
            state.put(state.ACTIVE_CHECKPOINT, None)
            return
        names = list(checkpoints)
        current = state.active_checkpoint()
        index = next((i for i, n in enumerate(names) if checkpoints[n] == current), 0)
        choice = st.selectbox("Active checkpoint", names, index=index, key="fm_sidebar_checkpoint")
        state.put(state.ACTIVE_CHECKPOINT, str(checkpoints[choice]))
        if is_foundation(checkpoints[choice]):
            st.caption(f"{choice}: the pretrained model shipped with fm_engine (read-only).")
        try:
            checkpoint = get_checkpoint(checkpoints[choice])
        except CheckpointError as error:
            st.error(f"Cannot load this checkpoint: {error}")
            return
        lines = []
        for task in checkpoint.model.tasks.values():
            unit = task.unit or (", ".join(task.classes or []) if task.classes else "")
            kind = {"regression": "", "classification": " (classes)", "kernel_regression": f" vs t ({task.t_unit})"}
            lines.append(f"- **{task.name}**{kind[task.type.value]}: {unit}")
        st.markdown("\n".join(lines))
