"""Exponential moving average of the weights: the update rule, and a real tiny run that keeps the averaged weights."""

import json

import pytest
import torch
from safetensors.torch import load_file

from fm_engine.checkpoints import load_checkpoint
from fm_engine.training import RunDirectory, TrainConfig, train
from fm_engine.training.evaluate import evaluate
from fm_engine.training.trainer import build_datamodule
from fm_engine.training.weights import WeightAverage
from tests.conftest import tiny_config_dict


def test_update_follows_the_warmed_up_decay_and_copies_integer_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    frozen = model[0].bias.detach().clone()
    average = WeightAverage(model, decay=0.99)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()
    model(torch.randn(4, 3))  # BatchNorm counts a batch
    average.update(model)  # first update: decay min(0.99, 1/10) -> 90 % of the new weights
    expected = start + 0.9 * 1.0
    assert torch.allclose(average.model[0].weight, expected)
    assert average.model[0].bias.equal(frozen)  # an unchanged parameter stays bit-identical
    assert average.model[1].num_batches_tracked.item() == 1
    assert not any(p.requires_grad for p in average.model.parameters())
    restored = WeightAverage(model, decay=0.99)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 1 and restored.model[0].weight.equal(average.model[0].weight)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_decay_outside_the_open_unit_interval_is_refused(tiny_data, decay):
    data = tiny_config_dict(tiny_data)
    data["trainer"]["ema_decay"] = decay
    with pytest.raises(ValueError, match="trainer.ema_decay must be between 0 and 1"):
        TrainConfig.from_dict(data)


def test_run_with_averaging_keeps_the_averaged_weights_it_validated(tiny_data, tmp_path):
    plain = TrainConfig.from_dict(tiny_config_dict(tiny_data, max_epochs=4, patience=50))
    averaged = TrainConfig.from_dict(tiny_config_dict(tiny_data, max_epochs=4, patience=50, ema_decay=0.9))
    train(plain, tmp_path / "plain")
    train(averaged, tmp_path / "ema")
    weights = {name: load_file(str(tmp_path / name / "checkpoint" / "model.safetensors")) for name in ("plain", "ema")}
    assert any(not torch.equal(weights["plain"][k], weights["ema"][k]) for k in weights["plain"])

    # the kept weights are the ones whose validation loss was logged as the best epoch's
    epochs = [r for r in RunDirectory(tmp_path / "ema").read_metrics() if r["kind"] == "epoch"]
    best = min(r["val/loss"] for r in epochs)
    model = load_checkpoint(tmp_path / "ema").model
    dm = build_datamodule(averaged)
    dm.setup()
    assert evaluate(model, dm, "val").loss == pytest.approx(best, rel=1e-5)
    card = json.loads((tmp_path / "ema" / "checkpoint" / "card.json").read_text())
    assert card["config"]["trainer"]["ema_decay"] == 0.9
