"""Defaults are written once, in TrainConfig's sections: fm train, fm-trainer's classes, the datamodule and the
demo start from them (field by field; a different literal anywhere fails here)."""

from __future__ import annotations

import inspect
from typing import Any

from fm_engine.cli import build_parser
from fm_engine.data import CompositionDataModule
from fm_engine.data.settings import DataSection
from fm_engine.trainer_cli import FMDataModule, FMLightningModel
from fm_engine.training import TrainConfig, demo_config
from fm_engine.training.config import ModelSection, OptimizerSection, TrainerSection
from fm_engine.training.lightning import MultiTaskModule

TASKS = [{"bundled": "band_gap"}]


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"trainer.max_epochs": 100, ...}``."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def differences(config: TrainConfig) -> dict[str, Any]:
    """The settings of ``config`` that are not TrainConfig's defaults (tasks aside)."""
    defaults = flat(TrainConfig(tasks=config.tasks).to_dict())
    return {key: value for key, value in flat(config.to_dict()).items() if defaults[key] != value}


def signature_defaults(function: Any) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}  # fmt: skip


def test_fm_trainer_data_class_defaults_are_the_data_section():
    defaults = signature_defaults(FMDataModule.__init__)
    section = DataSection()
    for name in ("val_ratio", "test_ratio", "batch_size", "num_workers", "split_seed", "allow_pickle"):
        assert defaults[name] == getattr(section, name), name
    assert defaults["seed"] == TrainConfig(tasks=TASKS).seed
    assert FMDataModule(TASKS).train_config == TrainConfig(tasks=TASKS, base_dir="")  # nothing else differs


def test_fm_trainer_model_class_defaults_are_the_model_optimizer_and_trainer_sections():
    defaults = signature_defaults(FMLightningModel.__init__)
    assert defaults["lr"] == OptimizerSection().lr
    assert defaults["weight_decay"] == OptimizerSection().weight_decay
    assert defaults["loss_balancer"] == ModelSection().loss_balancer
    assert defaults["ema_decay"] == TrainerSection().ema_decay
    model = FMLightningModel()
    assert model.section == ModelSection() and model.optimizer_section == OptimizerSection()


def test_datamodule_and_training_module_defaults_are_the_config_sections():
    data, optimizer = signature_defaults(CompositionDataModule.__init__), signature_defaults(MultiTaskModule.__init__)
    section = DataSection()
    for name in ("val_ratio", "test_ratio", "batch_size", "num_workers", "split_seed", "allow_pickle"):
        assert data[name] == getattr(section, name), name
    assert data["seed"] == TrainConfig(tasks=TASKS).seed
    assert {k: optimizer[k] for k in ("lr", "weight_decay", "scheduler")} == {
        "lr": OptimizerSection().lr, "weight_decay": OptimizerSection().weight_decay,
        "scheduler": OptimizerSection().scheduler,
    }  # fmt: skip


def test_fm_train_options_leave_the_config_values_alone():
    """``fm train``'s trainer options only override: unset, they are None and the config's value holds."""
    args = build_parser().parse_args(["train", "--config", "c.yaml", "--out", "o"])
    for name in ("max_epochs", "devices", "num_nodes", "strategy", "accelerator"):
        assert getattr(args, name) is None, name


def test_demo_config_is_the_defaults_and_only_what_differs():
    demo = demo_config()
    assert differences(demo) == {
        "name": "demo",
        "data.batch_size": 128,
        "trainer.max_epochs": 180,
        "trainer.patience": 40,
        "model.encoder.hidden_dims": [512, 256],
    }
