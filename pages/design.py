"""Design: under construction."""

import streamlit as st

st.title("Design")
st.info("This page is being built.")
