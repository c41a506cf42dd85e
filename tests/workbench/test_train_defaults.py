"""The Train page's forms start from TrainConfig's defaults, field by field: the Train form's default schedule is
the config's (epochs, patience, batch size and validation share left to the data size); only the by-hand schedule
and the rehearsal form send the deliberate form numbers; the widgets show exactly the form's start values."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fm_engine.training import TrainConfig
from fm_engine.training.rehearsal import RehearsalConfig
from tests.training.test_defaults import differences
from tests.workbench.conftest import open_page
from workbench.components.train_form import (
    FORM_DATA,
    FORM_TRAINER,
    MLP_PRESETS,
    REHEARSAL_TRAINER,
    SCHEDULE_HAND,
    FormValues,
    RehearsalValues,
    build_config,
    build_rehearsal_config,
)

FORM_CHOICES = {"trainer.progress_bar": False}  # the one deliberate difference: runs in a background process
HAND_SCHEDULE = {  # the by-hand schedule's starting numbers (the config's defaults are None: by data size)
    "trainer.max_epochs": FORM_TRAINER.max_epochs,
    "trainer.patience": FORM_TRAINER.patience,
    "data.batch_size": FORM_DATA.batch_size,
    "data.val_ratio": FORM_DATA.val_ratio,
}


def test_train_form_starts_from_the_config_defaults():
    config = TrainConfig.from_dict(build_config(FormValues(bundled=["band_gap"])))
    assert differences(config) == {"name": FormValues().name, **FORM_CHOICES}
    assert config.seed == TrainConfig(tasks=config.tasks).seed
    schedule = (config.trainer.max_epochs, config.trainer.patience, config.data.batch_size, config.data.val_ratio)
    assert schedule == (None, None, None, None)  # left to the data size, as in TrainConfig's defaults


def test_a_schedule_set_by_hand_sends_the_form_numbers():
    config = TrainConfig.from_dict(build_config(FormValues(bundled=["band_gap"], schedule=SCHEDULE_HAND)))
    assert differences(config) == {"name": FormValues().name, **FORM_CHOICES, **HAND_SCHEDULE}


def test_rehearsal_form_starts_from_the_config_defaults():
    config = RehearsalConfig.from_dict(build_rehearsal_config(RehearsalValues(tasks=["band_gap", "hea_phase"])))
    assert config.replay_ratio == RehearsalConfig(train=config.train).replay_ratio
    assert differences(config.train) == {
        "name": RehearsalValues().name, **FORM_CHOICES, **HAND_SCHEDULE,
        "trainer.max_epochs": REHEARSAL_TRAINER.max_epochs, "trainer.patience": REHEARSAL_TRAINER.patience,
        "model.encoder.hidden_dims": MLP_PRESETS["small"],
    }  # fmt: skip


TRAIN_WIDGETS = {  # widget key -> FormValues field
    "train_name": "name", "train_seed": "seed", "train_hidden_dims": "hidden_dims", "train_dropout": "dropout",
    "train_balancer": "loss_balancer", "train_autoencoder": "autoencoder", "train_balanced": "balanced_classes",
    "train_threshold": "threshold_on_validation", "train_schedule": "schedule",
    "train_epochs": "max_epochs", "train_patience": "patience", "train_batch": "batch_size", "train_lr": "lr",
    "train_ema": "weight_averaging", "train_val": "val_ratio", "train_test": "test_ratio",
}  # fmt: skip
REHEARSAL_WIDGETS = {  # widget key -> RehearsalValues field
    "rehearsal_name": "name", "rehearsal_seed": "seed", "rehearsal_replay": "replay_ratio",
    "rehearsal_preset": "preset", "rehearsal_autoencoder": "autoencoder", "rehearsal_balanced": "balanced_classes",
    "rehearsal_epochs": "max_epochs", "rehearsal_patience": "patience", "rehearsal_batch": "batch_size",
    "rehearsal_lr": "lr",
}  # fmt: skip


def test_page_widgets_show_the_form_start_values(workspace: Path):
    at = open_page("train")
    form, rehearsal = asdict(FormValues()), asdict(RehearsalValues())
    shown = {field: at.session_state[key] for key, field in TRAIN_WIDGETS.items()}
    assert shown == {field: form[field] for field in TRAIN_WIDGETS.values()}
    shown = {field: at.session_state[key] for key, field in REHEARSAL_WIDGETS.items()}
    assert shown == {field: rehearsal[field] for field in REHEARSAL_WIDGETS.values()}
    assert at.session_state["train_encoder"] == "MLP" and FormValues().encoder == "mlp"
    assert not at.warning and not at.exception
