"""An ensemble's spread at a task's lower bound: the mean is the members' floored outputs (what users get), the
std is the members' RAW outputs' std, so rows where every member sits at the bound still carry a spread
(fm_engine.predict.predict_members, fm_engine.training.evaluate.ensemble_outputs)."""

from __future__ import annotations

import numpy as np

from fm_engine import load_checkpoint
from fm_engine.config import read_config_file
from fm_engine.predict import predict_checkpoint, predict_weights
from fm_engine.training import TrainConfig
from fm_engine.training.ensemble import member_folder
from fm_engine.training.evaluate import ensemble_outputs
from fm_engine.training.trainer import read_model_config, recorded_datamodule

FORMULAS = ["Al0.3CoCrFeNi", "NbMoTaW", "CoCrFeMnNi", "Fe2O3", "TiZrHfNb"]
TASK = "bulk_modulus"


def floored_everywhere(checkpoint, raw: list[np.ndarray]) -> float:
    """Put every member's bulk-modulus lower bound above all their raw outputs: every row of every member floored."""
    floor = float(np.max(raw)) + 10.0
    for model in checkpoint.models:
        model.config.scalers[TASK].floor = floor
    return floor


def test_rows_floored_in_every_member_keep_the_raw_spread(tiny_ensemble):
    from fm_engine.compositions import parse_many

    checkpoint = load_checkpoint(tiny_ensemble)
    weights = parse_many(FORMULAS).weights
    raw = [predict_weights(model, weights)[TASK] for model in checkpoint.models]  # no bound stored: raw outputs
    assert np.ptp(np.stack(raw), axis=0).min() > 0  # the members disagree on every row
    floor = floored_everywhere(checkpoint, raw)
    floored = [predict_weights(model, weights)[TASK] for model in checkpoint.models]
    assert np.ptp(np.stack(floored), axis=0).max() < 1e-4 * floor  # every member at the bound: floored std ~ 0
    mean, std = predict_checkpoint(checkpoint, weights)
    np.testing.assert_allclose(mean[TASK], floor, rtol=1e-6)
    scale = checkpoint.spread_scales[TASK]
    expected = np.hypot(np.stack(raw).astype(np.float64).std(axis=0) * scale.a, scale.b)
    assert np.all(std[TASK] > 0)
    np.testing.assert_allclose(std[TASK], expected, rtol=1e-6)


def test_the_calibration_outputs_use_the_raw_spread_too(tiny_ensemble):
    checkpoint = load_checkpoint(tiny_ensemble)
    lead = member_folder(tiny_ensemble, 0)
    record = TrainConfig.from_record(read_config_file(lead / "config.yaml"), anchor=lead)
    dm, _, _ = recorded_datamodule(record, lead, read_model_config(lead / "model_config.json"))
    collected, _, before = ensemble_outputs(checkpoint.models, dm, "val")
    raw = [
        model.to_physical(TASK, c.outputs[TASK]).numpy() for model, c in zip(checkpoint.models, collected, strict=True)
    ]
    floor = floored_everywhere(checkpoint, raw)
    _, means, stds = ensemble_outputs(checkpoint.models, dm, "val")
    np.testing.assert_allclose(means[TASK], floor, rtol=1e-6)  # float32 at the bound
    assert np.all(stds[TASK] > 0)
    np.testing.assert_allclose(stds[TASK], before[TASK], rtol=1e-6)
    np.testing.assert_allclose(stds[TASK], np.stack(raw).astype(np.float64).std(axis=0), rtol=1e-6)
