"""The Train form can be restored from the settings a run was started with."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fm_engine.training.run_files import RunDirectory, now_iso
from tests.workbench.conftest import open_page
from workbench.components.train_form import SCHEDULE_AUTO, SCHEDULE_HAND, FormValues, build_config, form_values
from workbench.runs import submitted_config_path

BY_HAND = FormValues(
    name="hand-made", bundled=["hea_phase", "bulk_modulus"], encoder="transformer", d_model=64, num_layers=3, nhead=4,
    dropout=0.1, loss_balancer=False, autoencoder=False, balanced_classes=False, threshold_on_validation=False,
    schedule=SCHEDULE_HAND, max_epochs=33, patience=7, batch_size=64, lr=2e-3, weight_averaging=False,
    val_ratio=0.2, test_ratio=0.15, seed=11, start_from="scratch", ensemble_members=3,
)  # fmt: skip


@pytest.mark.parametrize(
    "values",
    [BY_HAND, FormValues(name="auto", bundled=["bulk_modulus"], hidden_dims="64, 32", schedule=SCHEDULE_AUTO)],
    ids=["by hand", "automatic"],
)
def test_the_form_values_come_back_from_the_config_they_built(values: FormValues):
    config = build_config(values, classification=["hea_phase"])
    restored, notes = form_values(config)
    assert notes == []
    if values.encoder == "transformer":  # the form keeps the MLP widths it showed; the config has none
        restored.hidden_dims = values.hidden_dims
    assert restored == values


def test_a_task_from_a_file_not_uploaded_in_this_session_is_named():
    config = build_config(FormValues(bundled=["bulk_modulus"])) | {}
    config["tasks"].append({"name": "my_gap", "type": "regression", "data_files": ["/data/gaps.csv"]})
    restored, notes = form_values(config)
    assert restored.bundled == ["bulk_modulus"] and restored.uploaded == []
    assert len(notes) == 1 and "my_gap" in notes[0] and "/data/gaps.csv" in notes[0] and "Data page" in notes[0]


def test_restore_fills_the_train_form_from_a_runs_settings(workspace: Path):
    run_dir = workspace / "runs" / "hand-made-20260101-100000"
    RunDirectory(run_dir).update_status(state="done", name="hand-made", created_at=now_iso())
    config = build_config(BY_HAND, classification=["hea_phase"])
    submitted_config_path(run_dir).write_text(yaml.safe_dump(config), encoding="utf-8")

    at = open_page("train")
    next(b for b in at.button if b.label == f"Restore the form from {run_dir.name}").click().run()
    assert not at.exception and not at.warning
    assert any(f"settings of **{run_dir.name}**" in i.value for i in at.info)
    assert at.text_input(key="train_name").value == "hand-made"
    assert at.checkbox(key="train_task_hea_phase").value and at.checkbox(key="train_task_bulk_modulus").value
    assert not at.checkbox(key="train_task_shear_modulus").value
    assert at.number_input(key="train_d_model").value == 64 and at.number_input(key="train_num_layers").value == 3
    assert at.radio(key="train_schedule").value == SCHEDULE_HAND
    assert (at.number_input(key="train_epochs").value, at.number_input(key="train_patience").value) == (33, 7)
    assert at.select_slider(key="train_batch").value == 64 and at.select_slider(key="train_lr").value == 2e-3
    assert at.slider(key="train_test").value == pytest.approx(0.15)
    assert not at.toggle(key="train_ema").value and not at.toggle(key="train_threshold").value
    assert at.number_input(key="train_ensemble").value == 3 and at.number_input(key="train_seed").value == 11
    assert at.radio(key="train_start").value == "scratch"
