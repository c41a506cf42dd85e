"""The run's callbacks: resume files written before the split, the ETA."""

import json
import shutil

import pytest
import torch

from fm_engine.training import RunDirectory, TrainConfig, train
from fm_engine.training.callbacks import LEGACY_STATE_KEY, ModelSelection, WeightAveraging, remaining_seconds
from tests.conftest import tiny_config_dict


def test_a_resume_file_from_before_the_split_hands_its_state_to_the_new_callbacks():
    averaging = WeightAveraging(0.9)
    selection = ModelSelection(None, patience=5, averaging=averaging)  # type: ignore[arg-type]
    legacy = {"best_loss": 0.3, "best_epoch": 2, "wait": 1, "best_state": {}, "average": {"updates": 7, "state": {}}}
    checkpoint = {"callbacks": {LEGACY_STATE_KEY: legacy}}
    selection.on_load_checkpoint(None, None, checkpoint)  # type: ignore[arg-type]
    states = checkpoint["callbacks"]
    assert LEGACY_STATE_KEY not in states
    assert states[selection.state_key]["best_epoch"] == 2
    assert states[averaging.state_key] == {"updates": 7, "state": {}}


def test_remaining_seconds_follows_the_pace_so_far():
    assert remaining_seconds(10.0, 10, 30) == pytest.approx(20.0)
    assert remaining_seconds(10.0, 40, 30) == 0.0
    assert remaining_seconds(10.0, 5, 0) is None


def test_a_last_ckpt_from_before_the_split_resumes_with_its_best_weights_and_average(tiny_data, tmp_path):
    config = TrainConfig.from_dict(tiny_config_dict(tiny_data, max_epochs=2, patience=50, ema_decay=0.9))
    run = RunDirectory(tmp_path / "run")
    train(config, run.path, progress_bar=False)
    state = torch.load(run.resume_path, weights_only=True)  # saved after the first epoch
    callbacks = state["callbacks"]
    averaging, selection = WeightAveraging(None).state_key, ModelSelection(None, patience=1).state_key  # type: ignore[arg-type]
    callbacks[LEGACY_STATE_KEY] = {**callbacks.pop(selection), "average": callbacks.pop(averaging)}  # the old layout
    torch.save(state, run.resume_path)
    shutil.rmtree(run.checkpoint_path)

    train(config, run.path, resume=True, progress_bar=False)  # the second epoch
    resumed = torch.load(run.resume_path, weights_only=True)
    assert resumed["callbacks"][averaging]["updates"] == resumed["global_step"]  # the average carried on
    losses = [r["val/loss"] for r in run.read_metrics() if r["kind"] == "epoch"]
    card = json.loads((run.checkpoint_path / "card.json").read_text())
    assert len(losses) == 2 and card["training"]["best_val_loss"] == pytest.approx(min(losses))
