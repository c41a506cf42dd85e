"""A scaling study (error vs amount of one task's training data) is started from the Train page, followed in the
live monitor, and its results open on the Rehearsal & scaling page."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.ceiling import CEILING_S
from tests.workbench.conftest import open_page
from workbench.components.train_form import parse_ratios
from workbench.runs import run_info
from workbench.state import WATCHED_RUN


def fill(at: AppTest, *, ratios: str) -> AppTest:
    at.text_input(key="scaling_name").input("gap-data")
    at.selectbox(key="scaling_task").select("hea_phase")
    at.text_input(key="scaling_ratios").input(ratios)
    at.number_input(key="scaling_epochs").set_value(2)
    next(b for b in at.button if b.label == "Start scaling study").click().run()
    assert not at.exception
    return at


def test_keep_ratios_are_fractions_of_the_data():
    assert parse_ratios("1, 0.5;0.25 0.5") == [1.0, 0.5, 0.25]
    for bad in ("", "1, half", "0", "1.5"):
        with pytest.raises(ValueError, match="Keep-ratios"):
            parse_ratios(bad)


def test_a_scaling_study_starts_from_the_train_page_and_opens_in_studies(workspace: Path):
    at = fill(open_page("train"), ratios="1, two")
    assert "Keep-ratios: '1, two' is not a list of numbers" in "\n".join(e.value for e in at.error)
    assert not list((workspace / "runs").glob("*/status.json"))

    fill(at, ratios="1, 0.5")
    assert not at.error, [e.value for e in at.error]
    study = Path(at.session_state[WATCHED_RUN])
    assert study.parent == workspace / "runs" and study.name.startswith("gap-data-")
    deadline = time.monotonic() + CEILING_S
    while run_info(study).state in ("queued", "running"):
        assert time.monotonic() < deadline, "the scaling study did not end"
        time.sleep(0.3)
    assert run_info(study).state == "done", (study / "train.log").read_text(errors="replace")[-2000:]
    table = pd.read_csv(study / "scaling.csv")
    assert sorted(table["ratio"].unique()) == [0.5, 1.0] and set(table["task"]) == {"hea_phase"}

    at.run()
    assert any(f"**{study.name}**" in s.value and "scaling study" in s.value for s in at.success)
    table = at.dataframe[0].value  # Past runs: one row for the study
    assert table[table["run"] == study.name].iloc[0][["kind", "state", "epochs"]].tolist() == [
        "scaling study", "done", "ratio 2 / 2"
    ]  # fmt: skip
    studies = open_page("studies")
    assert any(study.name in option for option in studies.selectbox[0].options)
