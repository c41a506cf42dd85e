"""Weight averaging (the update rule, resume state, a real tiny run that keeps the averaged weights), best
weights and early stopping: :mod:`fm_engine.training.weights`."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from fm_engine.checkpoints import load_checkpoint
from fm_engine.training import RunDirectory, TrainConfig, train
from fm_engine.training.evaluate import evaluate
from fm_engine.training.trainer import build_datamodule
from fm_engine.training.weights import AveragedWeights, BestWeights, WeightAverage
from tests.conftest import tiny_config_dict


def _model(value: float) -> torch.nn.Linear:
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def test_best_weights_keep_the_lowest_loss_and_stop_after_patience_epochs_without_improvement():
    best = BestWeights(patience=2, min_delta=0.1)
    assert best.observe(1.0, 0, _model(1.0))
    assert not best.observe(0.95, 1, _model(2.0))  # better, but by less than min_delta
    assert not best.should_stop
    assert not best.observe(math.nan, 2, _model(3.0))  # a non-finite loss never improves
    assert best.should_stop and (best.best_epoch, best.best_loss, best.wait) == (0, 1.0, 2)
    target = _model(9.0)
    assert best.restore(target)
    assert torch.all(target.weight == 1.0)  # the weights of epoch 0, not the later ones


def test_patience_zero_stops_at_the_first_epoch_that_does_not_improve():
    best = BestWeights(patience=0)
    best.observe(1.0, 0, _model(1.0))
    assert not best.should_stop  # never right after an improvement
    best.observe(2.0, 1, _model(1.0))
    assert best.should_stop


def test_best_weights_state_round_trips_and_reads_states_without_a_wait_count():
    best = BestWeights(patience=3)
    best.observe(0.5, 4, _model(1.5))
    best.observe(0.7, 5, _model(2.5))
    restored = BestWeights(patience=3)
    restored.load_state_dict(best.state_dict())
    assert (restored.best_loss, restored.best_epoch, restored.wait) == (0.5, 4, 1)
    older = {k: v for k, v in best.state_dict().items() if k != "wait"}  # fm-trainer's export state before
    restored.load_state_dict(older)
    assert restored.wait == 0 and torch.equal(restored.state["weight"], best.state["weight"])
    assert not BestWeights().restore(_model(1.0))  # nothing kept yet: the model is left as it is


def test_an_average_state_loaded_before_the_model_exists_is_applied_when_averaging_starts():
    source = AveragedWeights(0.9)
    source.attach(_model(1.0))
    source.update(_model(3.0))
    later = AveragedWeights(0.9)
    later.load_state_dict(source.state_dict())  # Lightning may restore before setup
    model = _model(0.0)
    later.attach(model)
    assert later.average is not None and later.average.updates == 1
    assert torch.equal(later.judged(model).weight, source.average.model.weight)
    later.copy_to(model)
    assert torch.equal(model.weight, source.average.model.weight)
    off = AveragedWeights(None)
    off.attach(model)
    assert off.judged(model) is model and off.state_dict() == {}
    with pytest.raises(ValueError, match="between 0 and 1"):
        AveragedWeights(1.0)


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
    plain = TrainConfig.from_dict(tiny_config_dict(tiny_data, max_epochs=4, patience=50, ema_decay=None))
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
