"""A new regression head started from the most related kept head (fm_engine.training.head_start): chosen on the
training rows by correlation, rescaled so it starts as the best straight line from that head's output to the
task's targets; unrelated tasks keep their fresh head."""

from __future__ import annotations

import numpy as np
import torch

from fm_engine.models import FlexibleMultiTaskModel, ModelConfig, TargetScaler
from fm_engine.tasks import TaskSpec
from fm_engine.training.head_start import start_related_heads


def model_with_heads() -> FlexibleMultiTaskModel:
    tasks = [TaskSpec(name="dft_gap"), TaskSpec(name="density"), TaskSpec(name="exp_gap"), TaskSpec(name="noise")]
    config = ModelConfig(input_dim=6, n_tokens=1, tasks=tasks,
                         scalers={t.name: TargetScaler(mean=[1.0], std=[2.0]) for t in tasks})  # fmt: skip
    torch.manual_seed(0)
    return FlexibleMultiTaskModel(config).eval()


def test_the_most_correlated_kept_head_starts_the_new_head_rescaled_to_its_targets():
    model = model_with_heads()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    with torch.no_grad():
        h = model.encode(torch.as_tensor(x))
        dft = model.to_physical("dft_gap", model.heads["dft_gap"](h)).numpy()
    exp_gap = 1.3 * dft + 0.4  # the experimental gap: a straight line of the DFT one
    rows = np.arange(150)  # training rows; the rest are not looked at
    noise = rng.normal(size=200)
    fresh = {k: v.clone() for k, v in model.heads["noise"].state_dict().items()}
    started = start_related_heads(model, x=x, kept=["dft_gap", "density"], min_correlation=0.5,
                                  targets={"exp_gap": (rows, exp_gap[rows]), "noise": (rows, noise[rows])})  # fmt: skip
    assert [(s.task, s.source, s.rows) for s in started] == [("exp_gap", "dft_gap", 150)]
    assert started[0].correlation > 0.999
    with torch.no_grad():
        predicted = model.to_physical("exp_gap", model.heads["exp_gap"](model.encode(torch.as_tensor(x)))).numpy()
    np.testing.assert_allclose(predicted, exp_gap, atol=1e-4)  # also on the rows it was not fitted on
    assert "head started from dft_gap" in started[0].text()
    kept = model.heads["noise"].state_dict()  # no kept head relates to noise: its fresh head stays
    assert all(torch.equal(kept[k], fresh[k]) for k in fresh)
