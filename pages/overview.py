"""Overview: what the workbench offers and which data it ships with."""

import streamlit as st

from fm_engine import __version__
from fm_engine.datasets import dataset_overview
from workbench.paths import page

st.title("fm_engine design workbench")
st.caption(f"fm_engine {__version__}: multi-task property models from chemical composition.")
st.markdown(
    "Predict materials properties from composition and design compositions that hit property targets. "
    "The workbench ships with real datasets so you can start without your own data."
)

st.subheader("Bundled datasets")
overview = dataset_overview()
st.dataframe(
    overview[["dataset", "task", "type", "unit", "rows", "compositions", "t", "license"]],
    hide_index=True,
    width="stretch",
)
st.page_link(page("data.py"), label="Browse the datasets", icon=":material/table:")
