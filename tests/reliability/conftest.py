"""Fixtures the reliability catalogue shares with the workbench tests."""

from tests.workbench.conftest import workspace  # noqa: F401 (an empty workspace and clean Streamlit caches)
