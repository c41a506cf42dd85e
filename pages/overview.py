"""Overview: what the workbench offers; on a first visit, one click trains the demo model."""

import streamlit as st

from fm_engine import __version__
from fm_engine.datasets import dataset_overview
from fm_engine.workspace import demo_run_dir, workspace_dir
from workbench.live import live_run
from workbench.paths import page
from workbench.resources import foundation_checkpoint, workspace_checkpoints
from workbench.runs import FOUNDATION_DEMO, demo_state, start_demo

st.title("fm_engine design workbench")
st.caption(f"fm_engine {__version__}: multi-task property models from chemical composition.")
st.markdown(
    "Predict materials properties from composition, and design compositions that hit property targets "
    "with the elements you can use. The workbench ships with real datasets, so you can start without data "
    "of your own."
)

state = demo_state()
if not workspace_checkpoints() or state in ("queued", "running"):
    st.subheader("Start here: train the demo model")
    if state in ("queued", "running", "done", "failed", "cancelled"):
        live_run(demo_run_dir(), key="demo")
        if state in ("failed", "cancelled") and st.button("Train the demo model again", type="primary"):
            start_demo()
            st.rerun()
    else:
        st.markdown(
            "One click trains the built-in multi-task model on the bundled data (bulk and shear modulus, "
            "Debye temperature, band gap, glass-forming ability, high-entropy-alloy phase, yield strength vs "
            "temperature) in a few minutes on a laptop CPU. It runs as a separate process: you can leave "
            "this page and come back."
        )
        if foundation_checkpoint() is not None:
            st.caption(FOUNDATION_DEMO)
        if st.button("Train the demo model", type="primary", key="start_demo"):
            start_demo()
            st.rerun()
else:
    st.success("A model is ready. Next: design compositions that hit your property targets.")
    left, right, _ = st.columns([1, 1, 2])
    left.page_link(page("design.py"), label="Inverse design", icon=":material/tune:")
    right.page_link(page("predict.py"), label="Predict", icon=":material/query_stats:")

st.subheader("Bundled datasets")
overview = st.cache_data(dataset_overview)()
st.dataframe(
    overview[["dataset", "task", "type", "unit", "rows", "compositions", "t", "license"]],
    hide_index=True,
    width="stretch",
)
st.page_link(page("data.py"), label="Browse the datasets", icon=":material/table:")
st.caption(f"Workspace (runs, checkpoints, designs): `{workspace_dir()}` (set `FM_WORKSPACE` to change it).")
