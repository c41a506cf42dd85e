"""Shared fixtures: tiny real datasets (subsets of the bundled data), a tiny trained run, a tiny foundation.

Tests never see the shipped foundation (``fm_engine/foundation_model/``): importing this file points
``$FM_FOUNDATION_DIR`` at a folder that holds none, for this process and every subprocess it starts (``fm train``,
``fm demo``, ``streamlit run``), so ``start_from: auto`` is scratch in every test and their outputs (the regression
fixtures among them) do not depend on whether a foundation is shipped. A test that wants a foundation installs the
tiny one (``with_foundation``), names a checkpoint in ``start_from``, or names the shipped one
(tests/foundation/test_shipped.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from fm_engine.datasets import bundled_task
from fm_engine.foundation import FOUNDATION_ENV

if TYPE_CHECKING:
    from fm_engine.training import TrainConfig

NO_FOUNDATION = Path(__file__).parent / "no-foundation-in-tests"  # a folder that does not exist
os.environ[FOUNDATION_ENV] = str(NO_FOUNDATION)


def write_tiny_data(folder: Path) -> Path:
    """Small CSVs in a user's own format: a regression, a classification and a sequence task."""
    folder.mkdir(parents=True, exist_ok=True)
    bulk = bundled_task("bulk_modulus").frame().head(240)
    bulk.rename(columns={"composition": "formula", "bulk_modulus": "target"})[["formula", "target"]].to_csv(
        folder / "bulk.csv", index=False
    )
    phase = bundled_task("hea_phase").frame().head(160)
    phase.to_csv(folder / "phase.csv", index=False)
    curves = bundled_task("yield_strength").frame()
    curves.to_csv(folder / "yield.csv", index=False)
    return folder


def tiny_config_dict(folder: Path, **trainer: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "seed": 7,
        "tasks": [
            {
                "name": "bulk_modulus",
                "type": "regression",
                "data_files": [str(folder / "bulk.csv")],
                "composition_column": "formula",
                "data_column": "target",
                "unit": "GPa",
            },
            {
                "name": "hea_phase",
                "type": "classification",
                "data_files": [str(folder / "phase.csv")],
                "class_weights": "balanced",
            },
            {
                "name": "yield_strength",
                "type": "kernel_regression",
                "data_files": [str(folder / "yield.csv")],
                "t_column": "temperature",
                "unit": "MPa",
                "t_unit": "K",
                "n_kernels": 4,
            },
        ],  # fmt: skip
        "model": {"encoder": {"type": "mlp", "hidden_dims": [64, 32]}, "autoencoder": {"hidden_dims": [64]}},
        "data": {"batch_size": 64},
        "trainer": {"max_epochs": 3, "patience": 5, "progress_bar": False, **trainer},
    }


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A real (tiny) training run, shared by prediction and checkpoint tests."""
    from fm_engine.training import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = train(TrainConfig.from_dict(tiny_config_dict(tiny_data)), run_dir)
    assert result.state == "done"
    return run_dir


ENSEMBLE_MEMBERS = 3


@pytest.fixture(scope="session")
def tiny_ensemble(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A real (tiny) ensemble run of :data:`ENSEMBLE_MEMBERS` members: :func:`tiny_config_dict` (so member 0 is the
    model of ``tiny_run``) with ``ensemble: {members: 3}``."""
    from fm_engine.training import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("runs") / "ensemble"
    config = tiny_config_dict(tiny_data) | {"ensemble": {"members": ENSEMBLE_MEMBERS}}
    result = train(TrainConfig.from_dict(config), run_dir)
    assert result.state == "done"
    return run_dir


BINARY_ALLOYS = 500


def imbalanced_alloys(n: int, seed: int) -> pd.DataFrame:
    """Fe-Ni-Cr-Al alloys labelled 1 (about 15 %) when Cr + Al exceed a cut, with 8 % of the labels flipped: an
    imbalanced binary task whose decision threshold moves off 0.5."""
    rng = np.random.default_rng(seed)
    fractions = 0.02 + 0.92 * rng.dirichlet([3.0, 2.0, 1.0, 0.6], n)  # every element at least 2 at.%
    label = (fractions[:, 2] + fractions[:, 3] > 0.44).astype(int)
    flip = rng.random(n) < 0.08
    label[flip] = 1 - label[flip]
    formulas = [f"Fe{a:.4f}Ni{b:.4f}Cr{c:.4f}Al{d:.4f}" for a, b, c, d in fractions]
    return pd.DataFrame({"formula": formulas, "label": label}).drop_duplicates("formula")


def binary_config(folder: Path, **task: Any) -> TrainConfig:
    """A tiny run of the binary task ``forms`` on :func:`imbalanced_alloys` (extra task settings: ``task``)."""
    from fm_engine.training import TrainConfig

    path = folder / "alloys.csv"
    imbalanced_alloys(BINARY_ALLOYS, seed=3).to_csv(path, index=False)
    spec = {"name": "forms", "type": "classification", "data_files": [str(path)], "composition_column": "formula",
            "data_column": "label", **task}  # fmt: skip
    return TrainConfig.from_dict({
        "seed": 5, "tasks": [spec], "model": {"encoder": {"type": "mlp", "hidden_dims": [32, 16]}},
        "data": {"val_ratio": 0.25, "batch_size": 64},
        "trainer": {"max_epochs": 6, "patience": 50, "progress_bar": False},
    })  # fmt: skip


@pytest.fixture(scope="session")
def binary_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, Path]:
    """A real (tiny) training run of :func:`binary_config`: its config and checkpoint directory."""
    from fm_engine.training import train

    folder = tmp_path_factory.mktemp("binary")
    config = binary_config(folder)
    result = train(config, folder / "run", progress_bar=False)
    assert result.state == "done" and result.checkpoint is not None
    return config, result.checkpoint


@pytest.fixture(scope="session")
def tiny_foundation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny foundation checkpoint folder (tests/foundation/tiny_foundation.py), made once per session."""
    from tests.foundation.tiny_foundation import make_tiny_foundation

    return make_tiny_foundation(tmp_path_factory.mktemp("tiny_foundation"))


@pytest.fixture
def with_foundation(tiny_foundation: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny foundation installed for this test ($FM_FOUNDATION_DIR); returns its checkpoint folder."""
    from fm_engine.foundation import FOUNDATION_ENV

    monkeypatch.setenv(FOUNDATION_ENV, str(tiny_foundation))
    return tiny_foundation
