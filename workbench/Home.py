"""Entry point of the workbench: ``streamlit run workbench/Home.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts only workbench/ on the path
    sys.path.insert(0, str(ROOT))

from workbench.paths import page  # noqa: E402
from workbench.sidebar import render_sidebar  # noqa: E402

st.set_page_config(page_title="fm_engine workbench", page_icon=":material/science:", layout="wide")

navigation = st.navigation(
    [
        st.Page(page("overview.py"), title="Overview", icon=":material/home:", default=True),
        st.Page(page("data.py"), title="Data", icon=":material/table:", url_path="data"),
        st.Page(page("train.py"), title="Train", icon=":material/model_training:", url_path="train"),
        st.Page(page("predict.py"), title="Predict", icon=":material/query_stats:", url_path="predict"),
        st.Page(page("design.py"), title="Inverse design", icon=":material/tune:", url_path="design"),
        st.Page(page("checkpoints.py"), title="Checkpoints", icon=":material/inventory_2:", url_path="checkpoints"),
        st.Page(page("studies.py"), title="Rehearsal & scaling", icon=":material/timeline:", url_path="studies"),
    ]
)
render_sidebar()
navigation.run()
