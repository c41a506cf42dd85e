"""Checkpoints: under construction."""

import streamlit as st

st.title("Checkpoints")
st.info("This page is being built.")
