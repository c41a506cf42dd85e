"""Where the foundation checkpoint is looked for: the shipped folder, or $FM_FOUNDATION_DIR (a checkpoint folder or
a run folder holding one); a folder without a checkpoint means no foundation, and start_from auto is scratch."""

from __future__ import annotations

from pathlib import Path

import pytest

from fm_engine.foundation import (
    FOUNDATION_ENV,
    SHIPPED_FOUNDATION,
    foundation_checkpoint_path,
    foundation_installed,
)
from fm_engine.training import TrainConfig
from fm_engine.training.start import StartError, resolve_start


def config(start_from: str) -> TrainConfig:
    return TrainConfig.from_dict({"tasks": [{"name": "x", "data_files": ["x.csv"]}], "start_from": start_from})


def test_without_the_variable_it_is_the_shipped_folder(monkeypatch):
    monkeypatch.delenv(FOUNDATION_ENV, raising=False)
    assert foundation_checkpoint_path() == SHIPPED_FOUNDATION
    assert SHIPPED_FOUNDATION.parent.name == "fm_engine" and SHIPPED_FOUNDATION.name == "foundation_model"
    assert foundation_installed() == (SHIPPED_FOUNDATION / "config.json").is_file()


def test_the_variable_names_a_checkpoint_folder_or_a_run_folder(tiny_foundation, monkeypatch):
    monkeypatch.setenv(FOUNDATION_ENV, str(tiny_foundation))
    assert foundation_checkpoint_path() == tiny_foundation.resolve() and foundation_installed()
    start = resolve_start(config("auto"))
    assert start.kind == "foundation" and start.checkpoint.path == tiny_foundation.resolve()
    run = tiny_foundation.parent / "run"  # the pretraining run the tiny foundation was copied from
    monkeypatch.setenv(FOUNDATION_ENV, str(run))
    assert foundation_checkpoint_path() == run.resolve() / "checkpoint" and foundation_installed()


def test_a_folder_without_a_checkpoint_means_no_foundation(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(FOUNDATION_ENV, str(tmp_path / "none"))
    assert not foundation_installed()
    assert resolve_start(config("auto")).kind == "scratch"
    with pytest.raises(StartError, match="no foundation checkpoint is installed at .*none"):
        resolve_start(config("foundation"))
