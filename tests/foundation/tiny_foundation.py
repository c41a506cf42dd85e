"""A tiny foundation for tests: an ordinary ``fm pretrain``-style run (``data.corpus``) on a synthetic corpus of a
few hundred compositions with three DFT-like heads named as the real corpus names them (two stability heads in
eV/atom and a band gap in eV), its checkpoint folder copied to ``<folder>/foundation_model`` like the shipped one.
Tests point ``$FM_FOUNDATION_DIR`` (:data:`fm_engine.foundation.FOUNDATION_ENV`) at it."""

from __future__ import annotations

import shutil
from pathlib import Path

from fm_engine.training import TrainConfig, train
from tests.foundation.synthetic import write_synthetic_corpus

# (name, type, unit, share of rows labelled): the corpus builder's names and units
FOUNDATION_TASKS = (
    ("oqmd_formation_energy", "regression", "eV/atom", 0.9),
    ("mp_energy_above_hull", "regression", "eV/atom", 0.6),
    ("mp_band_gap", "regression", "eV", 0.6),
)


def make_tiny_foundation(folder: Path, *, n: int = 400, epochs: int = 4) -> Path:
    """Write the corpus (``<folder>/corpus``), pretrain on it (``<folder>/run``) and return the foundation's
    checkpoint folder (``<folder>/foundation_model``); a few seconds on one CPU core."""
    corpus = write_synthetic_corpus(folder / "corpus", n, seed=4, tasks=FOUNDATION_TASKS)
    config = TrainConfig.from_dict({
        "name": "foundation", "seed": 3, "start_from": "scratch",
        "data": {"corpus": str(corpus.path), "batch_size": 64},
        "model": {"encoder": {"hidden_dims": [32, 16]}, "autoencoder": {"hidden_dims": [32]}},
        "trainer": {"max_epochs": epochs, "patience": epochs, "progress_bar": False},
    })  # fmt: skip
    result = train(config, folder / "run")
    assert result.state == "done", result
    target = folder / "foundation_model"
    shutil.copytree(folder / "run" / "checkpoint", target)
    return target
