"""The shipped foundation (``fm_engine/foundation_model/``): it is installed, within the size limit, loads like any
checkpoint, predicts its DFT properties in their units, holds no experimental benchmark target, and is where a
default run starts (its encoder weights, its heads kept within a stated tolerance by the shipped replay sample)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fm_engine.checkpoints import load_checkpoint
from fm_engine.datasets import bundled_task
from fm_engine.foundation import FOUNDATION_ENV, REPLAY_FOLDER, SHIPPED_FOUNDATION
from fm_engine.foundation.ship import SIZE_LIMIT_BYTES, folder_bytes
from fm_engine.training import TrainConfig, train
from fm_engine.training.start import config_for_start, plan_start, resolve_start

KEPT_TOLERANCE = 1.5  # a kept head's test MAE after a short fine-tune: at most this times its MAE before
EXPERIMENTAL = ("expt", "glass", "experimental")  # matbench's measured sets: never a corpus task


@pytest.fixture(scope="module")
def foundation():
    return load_checkpoint(SHIPPED_FOUNDATION)


def test_the_foundation_is_installed_within_the_size_limit_with_its_card(foundation):
    folder = SHIPPED_FOUNDATION
    assert folder_bytes(folder) <= SIZE_LIMIT_BYTES
    card = foundation.card
    assert card is not None and len(card.tasks) >= 20
    for task in card.tasks:  # per-task test metrics on the corpus's held-back split
        assert task.test_metrics.get("n", 0) > 0, task.name
    assert card.rebuild and card.rebuild[0] == "fm corpus" and "fm pretrain" in card.rebuild[1]
    assert (folder / REPLAY_FOLDER / "corpus.parquet").is_file()


def test_no_experimental_benchmark_target_is_a_foundation_task(foundation):
    for name, source in foundation.card.data_sources.items():
        text = f"{name} {source.get('dataset', '')} {source.get('file', '')}".lower()
        assert not any(word in text for word in EXPERIMENTAL), (name, source)


def test_the_foundation_predicts_dft_properties_in_their_units(foundation):
    table = foundation.predict(["NaCl", "Al2O3", "Cu"])
    enthalpy = table.set_index("composition")["oqmd_formation_energy [eV/atom]"]
    assert enthalpy["NaCl"] < -1.0 and enthalpy["Al2O3"] < -2.0 and abs(enthalpy["Cu"]) < 0.2  # eV/atom
    assert foundation.card.task("oqmd_formation_energy").unit == "eV/atom"
    gap = table.set_index("composition")["mp_band_gap [eV]"]
    assert gap["NaCl"] > 3.0 and gap["Cu"] < 0.5  # eV: an insulator and a metal
    assert table["oqmd_formation_energy_distance_to_training"].notna().all()


def user_config(folder: Path) -> TrainConfig:
    """The five task keys a new user writes, on 300 rows of the bundled bulk modulus; a short schedule."""
    frame = bundled_task("bulk_modulus").frame().head(300)
    path = folder / "bulk.csv"
    frame.rename(columns={"composition": "formula", "bulk_modulus": "target"})[["formula", "target"]].to_csv(
        path, index=False
    )
    return TrainConfig.from_dict({
        "name": "bulk", "tasks": [{"name": "bulk_modulus", "type": "regression", "data_files": [str(path)],
                                   "composition_column": "formula", "data_column": "target"}],
        "trainer": {"max_epochs": 3, "patience": 3, "progress_bar": False},
    })  # fmt: skip


def test_a_default_run_starts_from_the_foundation_and_keeps_its_heads(foundation, tmp_path, monkeypatch):
    monkeypatch.setenv(FOUNDATION_ENV, str(SHIPPED_FOUNDATION))
    monkeypatch.setenv("FM_WORKSPACE", str(tmp_path / "workspace"))  # no corpus: the shipped sample is replayed
    config = user_config(tmp_path)
    start = resolve_start(config)
    assert start.kind == "foundation"
    run_config, notes = config_for_start(config, start)
    plan = plan_start(run_config, start, tmp_path / "plan", notes)
    own = foundation.model.state_dict()
    encoder = {k: v for k, v in plan.model.state_dict().items() if k.startswith("encoder.")}
    assert encoder and all(torch.equal(v, own[k]) for k, v in encoder.items())

    result = train(config, tmp_path / "run")
    card = load_checkpoint(result.checkpoint).card
    assert card.start.kind == "foundation" and card.start.checkpoint_id == foundation.checkpoint_id
    assert not card.start.frozen_heads and set(card.start.kept_heads) == set(foundation.model.tasks)
    for task in ("oqmd_formation_energy", "mp_band_gap", "mp_energy_above_hull"):
        before = card.start.test_metrics_before[task]["mae"]
        after = card.task(task).test_metrics["mae"]
        assert after <= KEPT_TOLERANCE * before, (task, before, after)
