"""Shared fixtures: tiny real datasets (subsets of the bundled data), a tiny trained run, a tiny foundation.

Tests never see the shipped foundation (``fm_engine/foundation_model/``): :func:`pytest_configure` points
``$FM_FOUNDATION_DIR`` at a folder that holds none, for this process and every subprocess it starts (``fm train``,
``fm demo``, ``streamlit run``), so ``start_from: auto`` is scratch in every test and their outputs (the regression
fixtures among them) do not depend on whether a foundation is shipped. A test that wants a foundation installs the
tiny one (``with_foundation``) or names a checkpoint in ``start_from``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fm_engine.datasets import bundled_task
from fm_engine.foundation import FOUNDATION_ENV

NO_FOUNDATION = Path(__file__).resolve().parent / "no_foundation"  # never created: no foundation installed


def pytest_configure(config: pytest.Config) -> None:
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
