"""Calibration of an ensemble's spread (fm_engine.calibration, fitted in fm_engine.training.ensemble): real tiny
ensembles; the factor a and floor b are fitted on the validation split only and applied to every exported std."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from fm_engine import load_checkpoint
from fm_engine.calibration import EXPECTED_LEVELS, UNCALIBRATED_NOTE, SpreadScale, coverage
from fm_engine.checkpoints import CheckpointError
from fm_engine.columns import STD_SUFFIX, split_unit, std_column
from fm_engine.compositions import canonical_key
from fm_engine.config import read_config_file
from fm_engine.training import TrainConfig
from fm_engine.training.ensemble import assemble_ensemble, member_folder
from fm_engine.training.run_files import RunDirectory
from tests.conftest import ENSEMBLE_MEMBERS

CALIBRATED = ("bulk_modulus", "yield_strength")  # regression and curve tasks; hea_phase (classification) is not


def relabelled_run(tiny_ensemble: Path, tmp_path: Path, split: str, *, shift: float) -> Path:
    """A copy of the ensemble run whose bulk-modulus labels of ``split``'s compositions are shifted by ``shift`` GPa
    (a copied data file, named in member 0's recorded model config), re-assembled: the same members, other truths."""
    run = tmp_path / f"run_{split}"
    shutil.copytree(tiny_ensemble, run)
    recorded = member_folder(run, 0) / "model_config.json"  # the data module is rebuilt from its task specs
    record = json.loads(recorded.read_text(encoding="utf-8"))
    task = next(t for t in record["tasks"] if t["name"] == "bulk_modulus")
    data = pd.read_csv(task["data_files"][0])
    table = load_checkpoint(tiny_ensemble).compositions()
    keys = set(table.loc[(table["split"] == split) & table["tasks"].str.contains("bulk_modulus"), "composition"])
    chosen = np.array([canonical_key(f) in keys for f in data["formula"]])
    assert chosen.sum() >= 5
    data.loc[chosen, "target"] += shift
    data.to_csv(tmp_path / f"bulk_{split}.csv", index=False)
    task["data_files"] = [str(tmp_path / f"bulk_{split}.csv")]
    recorded.write_text(json.dumps(record), encoding="utf-8")
    config = TrainConfig.from_record(read_config_file(run / "config.yaml"), anchor=run)
    assemble_ensemble(config, RunDirectory(run), seconds=lambda: 0.0)
    return run


def test_the_factor_and_floor_are_fitted_on_validation_only(tiny_ensemble, tmp_path):
    original = load_checkpoint(tiny_ensemble)
    assert set(original.spread_scales) == set(CALIBRATED)
    assert all(s.a >= 0 and s.b >= 0 and s != SpreadScale() for s in original.spread_scales.values())
    stored = json.loads((tiny_ensemble / "checkpoint" / "config.json").read_text(encoding="utf-8"))
    assert stored["ensemble"]["std_factors"] == {t: {"a": s.a, "b": s.b} for t, s in original.spread_scales.items()}
    before = original.card.ensemble.calibration["bulk_modulus"]
    assert before.scale == original.spread_scales["bulk_modulus"]
    # other test labels: the same (a, b) (the test split only measures them), other test figures
    tested = load_checkpoint(relabelled_run(tiny_ensemble, tmp_path, "test", shift=500.0))
    assert tested.spread_scales == original.spread_scales
    after = tested.card.ensemble.calibration["bulk_modulus"]
    assert (after.factor, after.floor) == (before.factor, before.floor)
    assert after.coverage_2_after < before.coverage_2_after  # 500 GPa off: far outside every interval
    # other validation labels: a wider bulk-modulus spread, the curve task's unchanged
    validated = load_checkpoint(relabelled_run(tiny_ensemble, tmp_path, "val", shift=500.0))
    wider, old = validated.spread_scales["bulk_modulus"], original.spread_scales["bulk_modulus"]
    assert wider != old and wider.apply(np.ones(1))[0] > 2 * old.apply(np.ones(1))[0]
    assert validated.spread_scales["yield_strength"] == original.spread_scales["yield_strength"]


def test_every_exported_std_is_the_floored_scaled_raw_member_std(tiny_ensemble):
    checkpoint = load_checkpoint(tiny_ensemble)
    formulas = ["Al0.3CoCrFeNi", "NbMoTaW", "CoCrFeMnNi", "Fe2O3"]
    table = checkpoint.predict(formulas, distances=False)
    members = [load_checkpoint(member_folder(tiny_ensemble, k)).predict(formulas, distances=False)
               for k in range(ENSEMBLE_MEMBERS)]  # fmt: skip
    columns = ["bulk_modulus [GPa]"] + [c for c in table.columns if c.startswith("yield_strength@") and "_std" not in c]
    for column in columns:
        raw = np.stack([m[column].to_numpy(dtype=np.float64) for m in members]).std(axis=0)
        scale = checkpoint.spread_scales[split_unit(column)[0].split("@")[0]]
        expected = np.sqrt((scale.a * raw) ** 2 + scale.b**2)
        np.testing.assert_allclose(table[std_column(column)], expected, rtol=1e-5, err_msg=column)
    proba = "hea_phase_proba_BCC [probability]"  # classification: not calibrated
    raw = np.stack([m[proba].to_numpy(dtype=np.float64) for m in members]).std(axis=0)
    np.testing.assert_allclose(table[std_column(proba)], raw, rtol=1e-5, atol=1e-7)


def test_the_card_reports_the_test_coverage_of_the_calibrated_std(tiny_ensemble, tiny_data):
    checkpoint = load_checkpoint(tiny_ensemble)
    record = checkpoint.card.ensemble.calibration["bulk_modulus"]
    assert record.scale == checkpoint.spread_scales["bulk_modulus"] and record.n_val > 0
    # recomputed from fm predict's columns on the test compositions
    truth = pd.read_csv(tiny_data / "bulk.csv")
    truth["key"] = [canonical_key(f) for f in truth["formula"]]
    truth = truth.drop_duplicates("key").set_index("key")["target"]
    table = checkpoint.compositions()
    test = list(table[(table["split"] == "test") & table["tasks"].str.contains("bulk_modulus")]["composition"])
    predicted = checkpoint.predict(test, distances=False)
    y, mean, std = truth.loc[test].to_numpy(), predicted["bulk_modulus [GPa]"], predicted["bulk_modulus_std [GPa]"]
    assert record.n_test == len(test)
    tolerance = 1.5 / len(test)  # float32 blocks of another shape may move a value on an interval's edge
    assert coverage(y, mean, std, 1) == pytest.approx(record.coverage_1_after, abs=tolerance)
    assert coverage(y, mean, std, 2) == pytest.approx(record.coverage_2_after, abs=tolerance)
    raw = np.sqrt(np.maximum(std**2 - record.floor**2, 0)) / record.factor
    assert coverage(y, mean, raw, 1) == pytest.approx(record.coverage_1_before, abs=tolerance)
    assert -1 <= record.spearman <= 1
    for level, observed in zip(EXPECTED_LEVELS, record.observed_after, strict=True):  # the calibration plot
        z = NormalDist().inv_cdf((1 + level) / 2)
        assert coverage(y, mean, std, z) == pytest.approx(observed, abs=tolerance), level
    markdown = (checkpoint.path / "card.md").read_text(encoding="utf-8")
    row = f"| bulk_modulus | {record.factor:.3g} | {record.floor:.3g} {checkpoint.card.task('bulk_modulus').unit} |"
    assert "## Calibration of the spread" in markdown and row in markdown


def test_an_ensemble_saved_before_calibration_loads_with_factor_one(tiny_ensemble, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_ensemble / "checkpoint", old)
    config = json.loads((old / "config.json").read_text(encoding="utf-8"))
    del config["ensemble"]["std_factors"]
    (old / "config.json").write_text(json.dumps(config), encoding="utf-8")
    card = json.loads((old / "card.json").read_text(encoding="utf-8"))
    del card["ensemble"]["calibration"]
    (old / "card.json").write_text(json.dumps(card), encoding="utf-8")
    loaded, calibrated = load_checkpoint(old), load_checkpoint(tiny_ensemble)
    assert loaded.is_ensemble and loaded.std_factors == {} and loaded.calibration_note == UNCALIBRATED_NOTE
    assert calibrated.calibration_note == ""
    assert loaded.card.ensemble.calibration == {} and "Not calibrated" in loaded.card.render_markdown()
    formulas = ["Al0.3CoCrFeNi", "NbMoTaW"]
    raw, scaled = loaded.predict(formulas, distances=False), calibrated.predict(formulas, distances=False)
    np.testing.assert_allclose(scaled["bulk_modulus [GPa]"], raw["bulk_modulus [GPa]"])
    scale = calibrated.spread_scales["bulk_modulus"]
    np.testing.assert_allclose(scaled["bulk_modulus_std [GPa]"], scale.apply(raw["bulk_modulus_std [GPa]"]), rtol=1e-6)


def test_factors_stored_before_the_floor_load_as_a_with_floor_zero(tiny_ensemble, tmp_path):
    old = tmp_path / "plain"
    shutil.copytree(tiny_ensemble / "checkpoint", old)
    config = json.loads((old / "config.json").read_text(encoding="utf-8"))
    config["ensemble"]["std_factors"] = {"bulk_modulus": 2.5, "yield_strength": 4}
    (old / "config.json").write_text(json.dumps(config), encoding="utf-8")
    loaded, raw = load_checkpoint(old), load_checkpoint(tiny_ensemble)
    assert loaded.spread_scales == {"bulk_modulus": SpreadScale(a=2.5, b=0.0), "yield_strength": SpreadScale(a=4.0)}
    assert loaded.std_factors == {"bulk_modulus": 2.5, "yield_strength": 4.0} and loaded.std_floors == {}
    formulas = ["Al0.3CoCrFeNi", "NbMoTaW"]
    unscaled = raw.spread_scales["bulk_modulus"]
    spread = raw.predict(formulas, distances=False)["bulk_modulus_std [GPa]"]
    members = np.sqrt(spread**2 - unscaled.b**2) / unscaled.a
    np.testing.assert_allclose(loaded.predict(formulas, distances=False)["bulk_modulus_std [GPa]"], 2.5 * members,
                               rtol=1e-5)  # fmt: skip


def test_a_single_model_has_no_std_and_no_factor(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    assert checkpoint.std_factors == {} and checkpoint.calibration_note == ""
    assert "std_factors" not in (checkpoint.path / "config.json").read_text(encoding="utf-8")
    assert not [c for c in checkpoint.predict(["NbMoTaW"]).columns if split_unit(c)[0].endswith(STD_SUFFIX)]


@pytest.mark.parametrize(("factors", "key", "says"), [
    ({"bulk_modulus": 0}, "bulk_modulus", "> 0"), ({"bulk_modulus": "x"}, "bulk_modulus", "> 0"),
    ({"nope": 1.5}, "nope", "no such task"), ([1.0], "", "task -> {a, b}"),
    ({"bulk_modulus": {"a": 1.0, "b": -0.5}}, "bulk_modulus.b", ">= 0"),
    ({"bulk_modulus": {"a": float("nan"), "b": 1.0}}, "bulk_modulus.a", "finite"),
    ({"bulk_modulus": {"a": 1.0}}, "bulk_modulus", "exactly a and b"),
    ({"bulk_modulus": {"a": 0, "b": 0}}, "bulk_modulus", "both 0"),
])  # fmt: skip
def test_a_bad_stored_factor_is_refused_naming_the_key(tiny_ensemble, tmp_path, factors, key, says):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_ensemble / "checkpoint", bad)
    config = json.loads((bad / "config.json").read_text(encoding="utf-8"))
    config["ensemble"]["std_factors"] = factors
    (bad / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"ensemble\.std_factors") as error:
        load_checkpoint(bad)
    assert f"ensemble.std_factors{'.' if key else ''}{key}" in str(error.value) and says in str(error.value)


def test_the_calibration_plot_of_a_curve_task_pools_its_points(tiny_ensemble):
    checkpoint = load_checkpoint(tiny_ensemble)
    record = checkpoint.card.ensemble.calibration["yield_strength"]
    assert len(record.observed_after) == len(record.observed_before) == len(EXPECTED_LEVELS)
    assert record.observed_after == sorted(record.observed_after)  # wider intervals hold at least as many truths
    table = checkpoint.compositions()
    curves = ((table["split"] == "test") & table["tasks"].str.contains("yield_strength")).sum()
    assert curves > 0 and record.n_test > 2 * curves  # every point of each test curve
