"""Best weights and early stopping (:class:`BestWeights`), the optional average's resume state
(:class:`AveragedWeights`), and resume files written before the callbacks were split."""

import math

import pytest
import torch

from fm_engine.training.callbacks import LEGACY_STATE_KEY, ModelSelection, WeightAveraging, remaining_seconds
from fm_engine.training.weights import AveragedWeights, BestWeights


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
