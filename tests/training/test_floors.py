"""Lower bounds in real (tiny) training: on a band-gap-like task (a third of the compositions at exactly 0) the
bound is found on the training split, stored, named in the card, and no prediction or card metric goes below it;
``lower_bound: none`` leaves predictions raw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fm_engine.checkpoints import load_checkpoint
from fm_engine.training import TrainConfig, train

METALS = ("Fe", "Ni", "Cu", "Al", "Ti", "Zn")
NONMETALS = ("O", "S")


def gap_like_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Metal-nonmetal binaries: the target is 0 (a metal) below 40 % of the nonmetal, else grows with its
    fraction (noise clipped at 0), so about a third of the rows sit exactly at 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        metal, nonmetal = str(rng.choice(METALS)), str(rng.choice(NONMETALS))
        x = float(rng.uniform(0.05, 0.95))  # the nonmetal's fraction
        value = 0.0 if x < 0.4 else max(0.0, 5.0 * (x - 0.4) + float(rng.normal(0, 0.1)))
        rows.append({"formula": f"{metal}{1 - x:.3f}{nonmetal}{x:.3f}", "gap": value})
    return pd.DataFrame(rows)


def gap_config(folder: Path, **task) -> TrainConfig:
    path = folder / "gaps.csv"
    gap_like_table().to_csv(path, index=False)
    spec = {"name": "gap", "data_files": [str(path)], "composition_column": "formula", "data_column": "gap",
            "unit": "eV", **task}  # fmt: skip
    return TrainConfig.from_dict({
        "seed": 3, "tasks": [spec], "model": {"encoder": {"type": "mlp", "hidden_dims": [32, 16]}},
        "data": {"val_ratio": 0.2, "batch_size": 64},
        "trainer": {"max_epochs": 40, "patience": 50, "ema_decay": None, "progress_bar": False},
    })  # fmt: skip


@pytest.mark.parametrize("setting", ["auto", "none"])
def test_band_gap_predictions_stop_at_the_floor_of_the_training_targets(tmp_path, setting):
    config = gap_config(tmp_path, lower_bound=setting)
    result = train(config, tmp_path / "run", progress_bar=False)
    assert result.state == "done" and result.checkpoint is not None
    checkpoint = load_checkpoint(result.checkpoint)
    scaler = checkpoint.model.config.scalers["gap"]
    card = checkpoint.card.task("gap")
    queries = [f"{a}{1 - x:.2f}{b}{x:.2f}" for a in METALS for b in NONMETALS for x in (0.05, 0.1, 0.2, 0.6, 0.9)]
    predicted = checkpoint.predict(queries, distances=False)["gap [eV]"].astype(float)
    if setting == "none":
        assert scaler.floor is None and card.lower_bound is None
        assert "Lower bounds" not in (result.checkpoint / "card.md").read_text()
        return
    train_targets = gap_like_table()["gap"].to_numpy()  # the share is measured on the training split only
    assert scaler.floor == 0.0 and 0.2 < scaler.floor_share < 0.5
    assert scaler.floor_share != pytest.approx(np.mean(train_targets == 0.0), abs=1e-4)
    assert card.lower_bound == 0.0 and card.lower_bound_share == scaler.floor_share
    scaler.floor = None
    raw = checkpoint.predict(queries, distances=False)["gap [eV]"].astype(float)
    assert (raw < 0).any()  # the network alone predicts negative gaps for some metals
    assert np.array_equal(predicted, np.maximum(raw, 0.0))
    assert "gap: never predicted below 0 eV" in (result.checkpoint / "card.md").read_text()
