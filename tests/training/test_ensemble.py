"""Ensembles (fm_engine.training.ensemble): real tiny training runs, members trained one after another."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.numpy import load_file

from fm_engine import load_checkpoint
from fm_engine.columns import STD_SUFFIX, split_unit, std_column
from fm_engine.compositions import canonical_key
from fm_engine.training import TrainConfig, train
from fm_engine.training.ensemble import member_folder
from fm_engine.training.run_files import RunDirectory
from tests.ceiling import CEILING_S
from tests.conftest import ENSEMBLE_MEMBERS, tiny_config_dict
from tests.regression.make_fixtures import fm_environment

FORMULAS = ["Al0.3CoCrFeNi", "Fe2O3", "NbMoTaW", "TiZrHfNb", "CoCrFeMnNi", "Xx3"]


def member_predictions(run: Path) -> list[pd.DataFrame]:
    """Each member's predictions, loaded from its own run folder's checkpoint (a single model each)."""
    members = [load_checkpoint(member_folder(run, k)) for k in range(ENSEMBLE_MEMBERS)]
    assert not any(member.is_ensemble for member in members)
    return [member.predict(FORMULAS, distances=False) for member in members]


def value_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("composition", "error") and pd.api.types.is_numeric_dtype(frame[c])]


def test_an_ensembles_prediction_is_the_mean_of_its_members(tiny_ensemble):
    checkpoint = load_checkpoint(tiny_ensemble)
    assert checkpoint.is_ensemble and len(checkpoint.members) == ENSEMBLE_MEMBERS
    assert checkpoint.members[0] is checkpoint.model
    ensemble = checkpoint.predict(FORMULAS, distances=False)
    members = member_predictions(tiny_ensemble)
    values = value_columns(members[0])
    assert values and not any(split_unit(c)[0].endswith(STD_SUFFIX) for c in values)
    assert any("@" in c for c in values) and any("_proba_" in c for c in values)  # curves and probabilities too
    for column in values:
        stacked = np.stack([m[column].to_numpy(dtype=np.float64) for m in members])
        np.testing.assert_allclose(ensemble[column], stacked.mean(axis=0), rtol=1e-6, atol=1e-9, err_msg=column)
        task = split_unit(column)[0].split("@")[0].split("_proba_")[0]
        scale = checkpoint.spread_scales.get(task)  # calibrated spread
        a, b = (scale.a, scale.b) if scale is not None else (1.0, 0.0)
        np.testing.assert_allclose(ensemble[std_column(column)], np.hypot(a * stacked.std(axis=0), b), rtol=1e-5,
                                   atol=1e-6, err_msg=column)  # fmt: skip
    good = ensemble["error"] == ""
    assert (ensemble.loc[good, "bulk_modulus_std [GPa]"] > 0).all()  # members that differ in seed differ
    assert ensemble.loc[~good].filter(like=STD_SUFFIX + " [").isna().all().all()  # a bad formula: no numbers at all
    # the predicted class comes from the mean probabilities (hea_phase has 4 classes: the most probable one)
    classes = checkpoint.model.tasks["hea_phase"].classes
    probabilities = ensemble[[f"hea_phase_proba_{c} [probability]" for c in classes]]
    expected = probabilities[good].to_numpy().argmax(axis=1)
    classes = np.asarray(checkpoint.model.tasks["hea_phase"].classes)
    assert list(ensemble.loc[good, "hea_phase"]) == list(classes[expected])
    # the checkpoint is self-contained: its members/<k> folders are the members' own weights
    for k in range(1, ENSEMBLE_MEMBERS):
        stored = load_checkpoint(checkpoint.path / "members" / str(k)).predict(FORMULAS, distances=False)
        pd.testing.assert_frame_equal(stored[values], members[k][values])


def test_member_zero_is_the_single_model_of_the_same_config(tiny_ensemble, tiny_run):
    single = load_file(tiny_run / "checkpoint" / "model.safetensors")
    for path in (member_folder(tiny_ensemble, 0) / "checkpoint", tiny_ensemble / "checkpoint"):
        member = load_file(path / "model.safetensors")
        assert sorted(member) == sorted(single)
        for name, values in single.items():
            np.testing.assert_array_equal(member[name], values, err_msg=name)
    other = load_file(member_folder(tiny_ensemble, 1) / "checkpoint" / "model.safetensors")
    assert any(not np.array_equal(other[name], values) for name, values in single.items())


def test_every_member_trains_tests_and_validates_on_one_split(tiny_ensemble):
    tables = [load_checkpoint(member_folder(tiny_ensemble, k)).compositions() for k in range(ENSEMBLE_MEMBERS)]
    ensemble = load_checkpoint(tiny_ensemble).compositions()
    for table in tables:
        pd.testing.assert_frame_equal(table, ensemble)
    assert set(ensemble["split"]) == {"train", "val", "test"}


def test_a_single_model_checkpoint_has_no_std_columns(tiny_run, tiny_data, tmp_path):
    checkpoint = load_checkpoint(tiny_run)
    assert not checkpoint.is_ensemble and checkpoint.members == [] and checkpoint.models == [checkpoint.model]
    before = checkpoint.predict(FORMULAS)
    assert not [c for c in before.columns if split_unit(c)[0].endswith(STD_SUFFIX)]
    # ensemble: {members: 1} is the single model, bit for bit
    config = TrainConfig.from_dict(tiny_config_dict(tiny_data) | {"ensemble": {"members": 1}})
    assert train(config, tmp_path / "one").state == "done"
    assert not (tmp_path / "one" / "members").exists()
    pd.testing.assert_frame_equal(load_checkpoint(tmp_path / "one").predict(FORMULAS), before)
    assert (tmp_path / "one" / "checkpoint" / "model.safetensors").read_bytes() == (
        tiny_run / "checkpoint" / "model.safetensors"
    ).read_bytes()


def test_identical_members_have_zero_spread(tiny_data, tmp_path):
    config = TrainConfig.from_dict(
        tiny_config_dict(tiny_data, max_epochs=2) | {"ensemble": {"members": 2, "seeds": [3, 3], "parallel": 1}}
    )
    assert train(config, tmp_path / "same").state == "done"
    table = load_checkpoint(tmp_path / "same").predict(FORMULAS[:5], distances=False)
    spreads = table[[c for c in table.columns if split_unit(c)[0].endswith(STD_SUFFIX)]]
    assert spreads.shape[1] > 5 and (spreads.to_numpy() == 0).all()


def test_the_card_sets_the_ensemble_beside_its_average_member(tiny_ensemble, tiny_data):
    checkpoint = load_checkpoint(tiny_ensemble)
    card = checkpoint.card
    assert card is not None and card.ensemble is not None
    record = card.ensemble
    assert record.members == ENSEMBLE_MEMBERS and record.seeds == [7, 8, 9]
    members = [load_checkpoint(member_folder(tiny_ensemble, k)).card for k in range(ENSEMBLE_MEMBERS)]
    for task in ("bulk_modulus", "hea_phase", "yield_strength"):
        for metric, value in record.mean_member_test_metrics[task].items():
            own = [m.task(task).test_metrics[metric] for m in members]
            assert value == pytest.approx(np.mean(own), rel=1e-9), (task, metric)
    # the card's test MAE is the ensemble mean's, recomputed here from its predictions of the test compositions
    truth = pd.read_csv(tiny_data / "bulk.csv")
    truth["key"] = [canonical_key(f) for f in truth["formula"]]
    truth = truth.drop_duplicates("key").set_index("key")["target"]
    table = checkpoint.compositions()
    test = table[(table["split"] == "test") & table["tasks"].str.contains("bulk_modulus")]["composition"]
    predicted = checkpoint.predict(list(test), distances=False)["bulk_modulus [GPa]"].to_numpy()
    mae = float(np.mean(np.abs(predicted - truth.loc[list(test)].to_numpy())))
    assert card.task("bulk_modulus").test_metrics["mae"] == pytest.approx(mae, rel=1e-4)
    assert "## Ensemble" in (checkpoint.path / "card.md").read_text(encoding="utf-8")
    # the card's config rebuilds the ensemble
    assert TrainConfig.from_record(card.config, anchor=checkpoint.path).ensemble.members == ENSEMBLE_MEMBERS


def test_resume_keeps_finished_members_and_trains_the_rest(tiny_ensemble, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_ensemble, run)
    shutil.rmtree(run / "checkpoint")
    shutil.rmtree(member_folder(run, 2))  # stopped before its first saved epoch
    kept = (member_folder(run, 1) / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    assert train(None, run, resume=True).state == "done"  # type: ignore[arg-type]
    assert (member_folder(run, 1) / "checkpoint" / "model.safetensors").stat().st_mtime_ns == kept
    again = load_checkpoint(run).predict(FORMULAS, distances=False)
    pd.testing.assert_frame_equal(again, load_checkpoint(tiny_ensemble).predict(FORMULAS, distances=False))


def fm(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fm_engine.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=fm_environment(), cwd=cwd)


def test_fm_train_ensemble_from_the_cli_then_fm_predict(tiny_data, tmp_path):
    config = tiny_config_dict(tiny_data, max_epochs=2)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    done = fm("train", "--config", "train.yaml", "--out", "run", "--ensemble", "2", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "## Ensemble" in done.stdout and "average member" in done.stdout
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.is_ensemble and len(checkpoint.members) == 2
    pd.DataFrame({"formula": FORMULAS}).to_csv(tmp_path / "in.csv", index=False)
    out = fm("predict", "--checkpoint", "run", "--input", "in.csv", "--output", "out.csv", "--no-progress",
             cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    written = pd.read_csv(tmp_path / "out.csv")
    expected = checkpoint.predict(pd.DataFrame({"formula": FORMULAS}))
    assert list(written.columns) == list(expected.columns)
    assert "bulk_modulus_std [GPa]" in written.columns and "hea_phase_proba_BCC_std [probability]" in written.columns
    np.testing.assert_allclose(written["bulk_modulus_std [GPa]"], expected["bulk_modulus_std [GPa]"], rtol=1e-6)


@pytest.mark.parametrize("members", [0, -1, "two"])
def test_a_bad_number_of_members_is_an_error_naming_the_key(tiny_data, tmp_path, members):
    with pytest.raises(ValueError, match=r"ensemble\.members"):
        TrainConfig.from_dict(tiny_config_dict(tiny_data) | {"ensemble": {"members": members}})
    config = tiny_config_dict(tiny_data) | {"ensemble": {"members": members}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    failed = fm("train", "--config", "train.yaml", "--out", "run", cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: ") and "ensemble.members" in failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "run").exists()


def test_a_bad_ensemble_option_on_the_command_line(tiny_data, tmp_path):
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(tiny_config_dict(tiny_data)), encoding="utf-8")
    for value, says in (("0", "ensemble.members"), ("two", "--ensemble")):
        failed = fm("train", "--config", "train.yaml", "--out", "run", "--ensemble", value, cwd=tmp_path)
        assert failed.returncode == 2 and says in failed.stderr and "Traceback" not in failed.stderr
    seeds = tiny_config_dict(tiny_data) | {"ensemble": {"members": 2, "seeds": [1]}}
    with pytest.raises(ValueError, match=r"ensemble\.seeds: expected one seed per member"):
        TrainConfig.from_dict(seeds)


@pytest.mark.filterwarnings("ignore:model.encoder")  # the start's encoder shape is used (said by a warning)
def test_members_fine_tune_from_one_start_on_one_split_with_its_replay(tiny_data, tiny_foundation, tmp_path):
    config = tiny_config_dict(tiny_data, max_epochs=2) | {"start_from": str(tiny_foundation),
                                                          "ensemble": {"members": 2, "parallel": 1}}  # fmt: skip
    assert train(TrainConfig.from_dict(config), tmp_path / "run").state == "done"
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.is_ensemble and "mp_band_gap" in checkpoint.model.tasks  # the foundation's heads are kept
    replays = [pd.read_parquet(member_folder(tmp_path / "run", k) / "replay.parquet") for k in range(2)]
    pd.testing.assert_frame_equal(replays[0], replays[1])  # the replay is part of the one split
    tables = [load_checkpoint(member_folder(tmp_path / "run", k)).compositions() for k in range(2)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    table = checkpoint.predict(FORMULAS[:3], distances=False)
    assert {"mp_band_gap_std", "bulk_modulus_std"} <= {split_unit(c)[0] for c in table.columns}
    assert checkpoint.card is not None and checkpoint.card.start is not None
    assert checkpoint.card.start.kept_heads and checkpoint.card.ensemble.members == 2


def test_members_side_by_side_train_exactly_as_one_after_another(tiny_data, tmp_path):
    """``ensemble.parallel: 2``: two member processes at once, with weights bit for bit those of members trained one
    after another in this process."""
    runs = {}
    for parallel in (2, 1):
        config = tiny_config_dict(tiny_data, max_epochs=3) | {"ensemble": {"members": 2, "parallel": parallel}}
        runs[parallel] = tmp_path / f"parallel_{parallel}"
        assert train(TrainConfig.from_dict(config), runs[parallel]).state == "done"
    for k in range(2):
        side, alone = (load_file(member_folder(runs[p], k) / "checkpoint" / "model.safetensors") for p in (2, 1))
        assert sorted(side) == sorted(alone)
        for name, values in alone.items():
            np.testing.assert_array_equal(side[name], values, err_msg=f"member {k}: {name}")
    assert RunDirectory(runs[2]).read_status()["most_at_once"] == 2  # two member processes were training at once
    assert "most_at_once" not in RunDirectory(runs[1]).read_status()
    first, second = (RunDirectory(member_folder(runs[2], k)).read_status() for k in range(2))
    assert first["pid"] != second["pid"]  # each in its own process
    pd.testing.assert_frame_equal(load_checkpoint(runs[2]).predict(FORMULAS, distances=False),
                                  load_checkpoint(runs[1]).predict(FORMULAS, distances=False))  # fmt: skip


def test_sigterm_cancels_members_side_by_side_then_resume_finishes(tiny_data, tmp_path):
    config = tiny_config_dict(tiny_data, max_epochs=400, patience=400) | {"ensemble": {"members": 2, "parallel": 2}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "fm_engine.cli",
        "train",
        "--config",
        "train.yaml",
        "--out",
        "run",
        "--no-progress",
    ]
    process = subprocess.Popen(command, cwd=tmp_path, env=fm_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    members = [RunDirectory(member_folder(tmp_path / "run", k)) for k in range(2)]
    deadline = time.monotonic() + CEILING_S
    while not all(m.resume_path.exists() and (m.read_status().get("epoch") or 0) >= 2 for m in members):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=CEILING_S)
    assert process.returncode == 143, output
    assert "Traceback" not in output and "--resume" in output
    assert RunDirectory(tmp_path / "run").read_status()["state"] == "cancelled"
    for member in members:  # each member saved its state and ended itself
        assert member.read_status()["state"] == "cancelled" and member.resume_path.exists()
    stopped = [m.read_status()["epoch"] for m in members]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))
    for member in members:  # fewer epochs left, so the resumed run ends soon
        record = yaml.safe_load(member.config_path.read_text(encoding="utf-8"))
        record["trainer"]["max_epochs"] = max(stopped) + 2
        member.config_path.write_text(yaml.safe_dump(record), encoding="utf-8")
    assert saved["ensemble"]["parallel"] == 2
    resumed = fm("train", "--out", "run", "--resume", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(tmp_path / "run").is_ensemble
    for member, epoch in zip(members, stopped, strict=True):
        logged = [r["epoch"] for r in member.read_metrics() if r["kind"] == "epoch"]
        assert max(logged) > epoch and logged == list(range(len(logged)))  # continued, not started again
