"""The Train form's schedule: automatic by data size by default (the form sends no epochs, patience, batch size or
validation share, so the run resolves them from its data as `fm train` does, records them in its config.yaml and
the live monitor shows them), or set by hand (the form's numbers are sent and shown)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from fm_engine.compositions import canonical_key
from fm_engine.data.recipe import auto_recipe
from fm_engine.training import TrainConfig
from fm_engine.training.run_files import RunDirectory
from tests.workbench.conftest import open_page
from tests.workbench.test_train_page import errors, submit, wait_for
from workbench.components.monitor import schedule_text
from workbench.components.train_form import (
    FORM_DATA,
    SCHEDULE_AUTO,
    SCHEDULE_HAND,
    SCHEDULE_KEYS,
    FormValues,
    build_config,
    schedule_note,
)
from workbench.runs import cancel, run_info, submitted_config
from workbench.state import UPLOADED_TASKS, WATCHED_RUN

SPEC = {"name": "my_bulk", "type": "regression", "composition_column": "formula", "data_column": "target",
        "unit": "GPa"}  # fmt: skip


def recorded(config: dict) -> dict:
    """The four schedule settings of a config dict (None: left to the data size)."""
    return {key: (config.get(section) or {}).get(key) for section, key in SCHEDULE_KEYS}


def test_the_schedule_texts_follow_the_recipe_and_the_run_files():
    note = schedule_note(examples=(300,))
    recipe = auto_recipe(300, test_ratio=FORM_DATA.test_ratio)
    assert f"300 compositions: up to {recipe.max_epochs} epochs, patience {recipe.patience}" in note
    automatic = build_config(FormValues(bundled=["band_gap"], schedule=SCHEDULE_AUTO))
    resolved = TrainConfig.from_dict(automatic)
    assert (
        schedule_text(resolved.to_dict(), automatic)
        == "Schedule (automatic by data size): chosen when the data are loaded."
    )
    resolved.apply_recipe(recipe)
    assert schedule_text(resolved.to_dict(), automatic) == (
        f"Schedule (automatic by data size): up to {recipe.max_epochs} epochs, patience {recipe.patience}, batch "
        f"{recipe.batch_size}, validation share {recipe.val_ratio:g}."
    )
    hand = build_config(FormValues(bundled=["band_gap"], schedule=SCHEDULE_HAND, max_epochs=7, patience=3))
    assert schedule_text(hand, hand).startswith("Schedule (set by hand): up to 7 epochs, patience 3, batch ")
    assert schedule_text(hand, None).startswith("Schedule: up to 7 epochs")  # a run started elsewhere
    assert schedule_text(None, hand) == ""


def test_a_default_run_from_the_form_records_and_shows_the_schedule_resolved_from_its_data(
    workspace: Path, tiny_data: Path
):
    frame = pd.read_csv(tiny_data / "bulk.csv")
    n = len({canonical_key(formula) for formula in frame["formula"]})
    expected = auto_recipe(n, test_ratio=FORM_DATA.test_ratio)
    at = open_page("train", **{UPLOADED_TASKS: {"my_bulk": {"spec": SPEC, "frame": frame}}})
    assert at.radio(key="train_schedule").value == SCHEDULE_AUTO  # preselected
    assert any(c.value == schedule_note() for c in at.caption)
    at.text_input(key="train_name").input("auto")
    at.checkbox(key="train_upload_my_bulk").check()
    at.text_input(key="train_hidden_dims").input("32, 16")
    submit(at)
    assert not at.error, errors(at)
    run_dir = Path(at.session_state[WATCHED_RUN])
    try:
        assert set(recorded(submitted_config(run_dir) or {}).values()) == {None}  # none of the four sent
        run = RunDirectory(run_dir)

        def resolved() -> bool:
            assert run_info(run_dir).state in ("queued", "running"), run_info(run_dir).status
            if not run.config_path.exists() or not run.read_status().get("max_epochs"):
                return False
            return None not in recorded(yaml.safe_load(run.config_path.read_text()) or {}).values()

        wait_for(resolved, what="the run to resolve its schedule")
        config = yaml.safe_load(run.config_path.read_text())
        assert recorded(config) == {"max_epochs": expected.max_epochs, "patience": expected.patience,
                                    "batch_size": expected.batch_size, "val_ratio": expected.val_ratio}  # fmt: skip
        assert expected.max_epochs != FormValues().max_epochs  # not the by-hand numbers
        assert json.loads(run.status_path.read_text())["max_epochs"] == expected.max_epochs
        at.run()
        assert not at.exception
        line = (
            f"Schedule (automatic by data size): up to {expected.max_epochs} epochs, patience {expected.patience}, "
            f"batch {expected.batch_size}, validation share {expected.val_ratio:g}."
        )
        assert any(c.value == line for c in at.caption), [c.value for c in at.caption]
        assert f" / {expected.max_epochs}" in at.get("progress")[0].proto.text  # epoch k / resolved epochs
    finally:
        cancel(run_dir)  # the test needs the recorded schedule, not a trained model
    wait_for(lambda: run_info(run_dir).state not in ("queued", "running"), 120, "the run to stop")
