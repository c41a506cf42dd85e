"""The Train form's "Start from" choice: the foundation preselected when it is installed, else scratch; a
checkpoint must be picked when "a checkpoint" is chosen; the choice reaches the training config."""

from __future__ import annotations

from pathlib import Path

from fm_engine.training import TrainConfig
from fm_engine.training.start import foundation_installed
from tests.workbench.conftest import open_page
from tests.workbench.test_train_page import errors, submit
from workbench.components.train_form import (
    START_CHECKPOINT,
    FormValues,
    build_config,
    start_choices,
    start_from_value,
    validate,
)


def test_start_choices_put_the_foundation_first_when_installed():
    assert start_choices(True) == ["foundation", "scratch", START_CHECKPOINT]
    assert start_choices(False) == ["scratch", START_CHECKPOINT]
    assert start_from_value(START_CHECKPOINT, "/runs/a") == "/runs/a" and start_from_value("scratch", "/x") == "scratch"
    values = FormValues(name="x", bundled=["band_gap"], start_from=start_from_value(START_CHECKPOINT, None))
    assert any("Choose the checkpoint to start from" in e for e in validate(values))
    config = build_config(FormValues(name="x", bundled=["band_gap"], start_from="/runs/a"))
    assert TrainConfig.from_dict(config).start_from == "/runs/a"


def test_the_form_offers_where_the_encoder_starts(workspace_with_model: Path):
    at = open_page("train")
    radio = at.radio(key="train_start")
    assert radio.options == start_choices(foundation_installed()) and radio.value == radio.options[0]
    assert at.selectbox(key="train_start_run").options == ["tiny"]  # the finished runs
    at.checkbox(key="train_task_band_gap").check()
    radio.set_value(START_CHECKPOINT)
    submit(at)
    assert "Choose the checkpoint to start from" in errors(at)
