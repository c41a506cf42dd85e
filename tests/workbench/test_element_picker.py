"""The periodic-table picker is a fragment: a click reruns the picker, not the page around it.

AppTest always reruns the whole script, so this drives a real ``streamlit run`` through Streamlit's agent API, which
reruns as a browser does (scoped to the fragment when the clicked button is inside one)."""

import json
import urllib.request
from pathlib import Path

from tests.ceiling import CEILING_S
from tests.workbench.conftest import ROOT, running_streamlit

APP = """
import sys
sys.path.insert(0, {root!r})
import streamlit as st
from workbench.components.element_picker import element_picker

st.session_state["body_runs"] = st.session_state.get("body_runs", 0) + 1
st.write(f"page body runs: {{st.session_state['body_runs']}}")
element_picker("picked", presets={{"light": ["Li", "Mg"]}}, descriptions={{"light": "two light metals"}})
st.button("Run", key="run")
"""


def interact(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/_stcore/agent/interact", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    return json.loads(urllib.request.urlopen(request, timeout=CEILING_S).read())


def texts(snapshot: dict) -> str:
    return json.dumps(snapshot["tree"])


def test_a_click_reruns_the_picker_not_the_page(tmp_path: Path):
    script = tmp_path / "picker_app.py"
    script.write_text(APP.format(root=str(ROOT)), encoding="utf-8")
    with running_streamlit(script=script) as url:
        snapshot = interact(url, {})
        session = snapshot["session_id"]
        assert "page body runs: 1" in texts(snapshot)
        for symbol in ("Fe", "Ni", "Co"):
            snapshot = interact(url, {"session_id": session, "trigger": {"key": f"picked__el_{symbol}"}})
            assert snapshot["status"] == "ready", texts(snapshot)[:2000]
        shown = texts(snapshot)
        assert "3 element(s) allowed: Fe Co Ni" in shown  # periodic-table order
        assert "page body runs: 1" in shown  # the page around the picker did not run again
        snapshot = interact(url, {"session_id": session, "trigger": {"key": "run"}})
        assert "page body runs: 2" in texts(snapshot)  # a button outside the picker reruns the page
        assert "two light metals (2 elements)" in texts(snapshot)  # a preset's meaning is its button's help
