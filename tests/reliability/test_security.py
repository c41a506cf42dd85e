"""Issue 14, security: nothing is unpickled unless the user opts in in person; paths recorded in a checkpoint
resolve against the checkpoint.

Every file each command reads gets a payload planted in it: a pickle whose ``__reduce__`` creates a marker
file when unpickled. Each case asserts that the marker never appears, that the command stops with exit code 2
and one ``error:`` line naming the file (no traceback), and that its inputs are unchanged.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from fm_engine.checkpoints import CheckpointError, load_checkpoint, read_compositions
from fm_engine.cli import main
from fm_engine.data import read_table
from fm_engine.data.tables import PICKLE_SUFFIXES
from fm_engine.run_lock import LOCK_FILE
from fm_engine.training import TrainConfig
from fm_engine.training.trainer import build_datamodule
from tests.ceiling import CEILING_S
from tests.conftest import tiny_config_dict


class Payload:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def plant(path: Path, marker: Path) -> Path:
    """Write the payload pickle to ``path`` (any name: .pkl, last.ckpt, model.pt, a CSV-named file, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes under ``folder`` (to assert inputs are unchanged)."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE)  # the run lock: runs part
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def assert_refused(code: int, err: str, *expected: str) -> str:
    """Exit code 2, exactly one ``error:`` line holding every ``expected`` substring, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err  # one line, nothing after it
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def pickle_config(folder: Path, data_file: str, *, allow_pickle: Any = None) -> dict[str, Any]:
    """The tiny config with its regression task reading ``data_file`` (other tasks: the tiny CSVs)."""
    config = tiny_config_dict(folder, max_epochs=1)
    config["tasks"][0]["data_files"] = [data_file]
    if allow_pickle is not None:
        config["data"]["allow_pickle"] = allow_pickle
    return config


# ------------------------------------------------------------------------------------------ read_table itself
@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_read_table_refuses_every_pickle_suffix_without_opening_it(tmp_path, marker, suffix):
    path = plant(tmp_path / f"data{suffix}", marker)
    with pytest.raises(ValueError, match="--allow-pickle") as error:
        read_table(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("value", ["true", "yes", 1])
def test_read_table_takes_only_an_exact_true_as_the_opt_in(tmp_path, marker, value):
    with pytest.raises(ValueError, match="pickled table can run code"):
        read_table(plant(tmp_path / "data.pkl", marker), allow_pickle=value)
    assert not marker.exists()


def test_with_the_opt_in_a_users_own_pickle_loads(tmp_path):
    frame = pd.DataFrame({"composition": ["Fe2O3", "NiO"], "y": [1.5, 2.5]})
    frame.to_pickle(tmp_path / "mine.pkl")
    pd.testing.assert_frame_equal(read_table(tmp_path / "mine.pkl", allow_pickle=True), frame)


# ------------------------------------------------------------------------------- fm train / scaling / rehearsal
@pytest.mark.parametrize("name", ["data.pkl", "data.pd.xz", "sub/../data.pickle"])
def test_fm_train_refuses_a_pickle_named_in_its_config_without_the_opt_in(tiny_data, tmp_path, marker, capsys, name):
    plant(tmp_path / Path(name).name, marker)
    config = write_yaml(tmp_path / "train.yaml", pickle_config(tiny_data, name))
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    assert_refused(code, capsys.readouterr().err, Path(name).name, "--allow-pickle")
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoint").exists()


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_a_non_boolean_allow_pickle_is_refused_naming_the_key(tiny_data, tmp_path, marker, capsys, value):
    plant(tmp_path / "data.pkl", marker)
    config = write_yaml(tmp_path / "train.yaml", pickle_config(tiny_data, "data.pkl", allow_pickle=value))
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    assert_refused(code, capsys.readouterr().err, "data.allow_pickle", "true or false")
    assert not marker.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["scaling", "--task", "bulk_modulus", "--ratios", "1"],
        ["rehearsal"],
    ],
)
def test_scaling_and_rehearsal_refuse_a_pickle_without_the_opt_in(tiny_data, tmp_path, marker, capsys, command):
    plant(tmp_path / "data.pkl", marker)
    config = write_yaml(tmp_path / "train.yaml", pickle_config(tiny_data, "data.pkl"))
    code = main([*command, "--config", str(config), "--out", str(tmp_path / "out"), "--no-progress"])
    assert_refused(code, capsys.readouterr().err, "data.pkl", "--allow-pickle")
    assert not marker.exists()


def test_opt_in_from_the_command_line_trains_on_a_users_own_pickle(tiny_data, tmp_path, capsys):
    bulk = pd.read_csv(tiny_data / "bulk.csv")
    bulk.to_pickle(tmp_path / "bulk.pkl")
    config = write_yaml(tmp_path / "train.yaml", pickle_config(tiny_data, "bulk.pkl"))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress", "--allow-pickle"]) == 0
    card = load_checkpoint(out).card
    assert card.tasks[0].compositions["train"] > 0
    assert card.config["data"]["allow_pickle"] is True  # recorded (and ignored whenever it is read back)


def test_opt_in_from_the_config_the_user_runs_reads_the_pickle(tiny_data, tmp_path):
    pd.read_csv(tiny_data / "bulk.csv").to_pickle(tmp_path / "bulk.pkl")
    config = write_yaml(tmp_path / "train.yaml", pickle_config(tiny_data, "bulk.pkl", allow_pickle=True))
    dm = build_datamodule(TrainConfig.from_file(config))
    dm.setup()
    assert len(dm.tables["bulk_modulus"]) == len(pd.read_csv(tiny_data / "bulk.csv").drop_duplicates("formula"))


# ------------------------------------------------------------------------------------------ fm train --resume
def resumable_run(folder: Path, tiny_run: Path, data_file: str, *, last_ckpt: bytes | None = None) -> Path:
    """A run folder (config.yaml, model_config.json, last.ckpt) whose records name ``data_file`` and opt in."""
    run = folder / "run"
    run.mkdir(parents=True)
    config = yaml.safe_load((tiny_run / "config.yaml").read_text(encoding="utf-8"))
    config["data"]["allow_pickle"] = True  # a recorded opt-in: must be ignored
    config["tasks"][0]["data_files"] = [data_file]
    write_yaml(run / "config.yaml", config)
    model_config = json.loads((tiny_run / "model_config.json").read_text(encoding="utf-8"))
    model_config["tasks"][0]["data_files"] = [data_file]
    (run / "model_config.json").write_text(json.dumps(model_config), encoding="utf-8")
    if last_ckpt is None:
        torch.save({"epoch": 1, "state_dict": {}}, run / "last.ckpt")  # passes the safe loader
    else:
        (run / "last.ckpt").write_bytes(last_ckpt)
    return run


@pytest.mark.parametrize("relative", [True, False])
def test_resume_never_unpickles_data_named_in_the_run_folder(tiny_run, tmp_path, marker, capsys, relative):
    run = resumable_run(tmp_path, tiny_run, "data.pkl" if relative else str(tmp_path / "data.pkl"))
    plant(run / "data.pkl" if relative else tmp_path / "data.pkl", marker)
    before = snapshot(run)
    code = main(["train", "--out", str(run), "--resume", "--no-progress"])
    # a relative path resolves against the run folder (its recorded base_dir), not the working directory
    assert_refused(code, capsys.readouterr().err, str(run / "data.pkl") if relative else str(tmp_path / "data.pkl"))
    assert not marker.exists()
    assert {k: v for k, v in snapshot(run).items() if k not in ("status.json",)} == {
        k: v for k, v in before.items() if k != "status.json"
    }


def test_allow_pickle_cannot_be_combined_with_resume(tiny_run, tmp_path, marker, capsys):
    run = resumable_run(tmp_path, tiny_run, "data.pkl")
    plant(run / "data.pkl", marker)
    code = main(["train", "--out", str(run), "--resume", "--allow-pickle", "--no-progress"])
    assert_refused(code, capsys.readouterr().err, "--allow-pickle cannot be combined with --resume")
    assert not marker.exists()


@pytest.mark.parametrize("allow_pickle_flag", [False, True])
def test_rehearsal_resume_never_unpickles_data_named_in_its_rehearsal_json(
    tiny_data, tmp_path, marker, capsys, allow_pickle_flag
):
    out = tmp_path / "rehearsal"
    record = pickle_config(tiny_data, "data.pkl", allow_pickle=True) | {"base_dir": "", "replay_ratio": 0.1}
    (out / "rehearsal.json").parent.mkdir(parents=True)
    (out / "rehearsal.json").write_text(json.dumps(record), encoding="utf-8")
    plant(out / "data.pkl", marker)
    flags = ["--allow-pickle"] if allow_pickle_flag else []
    code = main(["rehearsal", "--out", str(out), "--resume", "--no-progress", *flags])
    expected = "--allow-pickle cannot be combined" if allow_pickle_flag else f"{out / 'data.pkl'}: a pickled table"
    assert_refused(code, capsys.readouterr().err, expected)
    assert not marker.exists()


def crafted_checkpoint(marker: Path) -> bytes:
    """A Lightning-style checkpoint dict whose pickle runs the payload (torch.save keeps it as an object)."""
    path = marker.parent / "crafted.ckpt"
    torch.save({"epoch": 1, "state_dict": {}, "callbacks": Payload(marker)}, path)
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        ("crafted", "refused to resume: it asks for io.open"),
        ("plain_pickle", "refused to resume"),
        ("truncated", "cannot be resumed"),
        ("empty", "cannot be resumed: the file is empty"),
    ],
)
def test_a_crafted_or_broken_last_ckpt_is_one_clear_line(tiny_run, tmp_path, marker, capsys, contents, expected):
    data = {
        "crafted": crafted_checkpoint(marker),
        "plain_pickle": pickle.dumps(Payload(marker)),
        "truncated": crafted_checkpoint(marker)[:100],
        "empty": b"",
    }[contents]
    run = resumable_run(tmp_path, tiny_run, str(tmp_path / "bulk.csv"), last_ckpt=data)
    before = snapshot(run)
    code = main(["train", "--out", str(run), "--resume", "--no-progress"])
    assert_refused(code, capsys.readouterr().err, str(run / "last.ckpt"), expected)
    assert not marker.exists()
    assert snapshot(run) == before  # refused before any work: not even status.json changed


def test_a_non_utf8_model_config_on_resume_names_the_file(tiny_run, tmp_path, capsys):
    run = resumable_run(tmp_path, tiny_run, str(tmp_path / "bulk.csv"))
    (run / "model_config.json").write_bytes(b'{"input_dim": "\xff\xfe"}')
    code = main(["train", "--out", str(run), "--resume", "--no-progress"])
    assert_refused(code, capsys.readouterr().err, "model_config.json", "not UTF-8")


# ------------------------------------------------------------------------------------------ fm finetune --checkpoint
def shared_checkpoint(folder: Path, tiny_run: Path, data_file: str, *, base_dir: str | None = None) -> Path:
    """A copy of the tiny checkpoint (as someone might share it) whose card and config.json name
    ``data_file`` for the regression task and record the pickle opt-in."""
    checkpoint = folder / "shared" / "checkpoint"
    shutil.copytree(tiny_run / "checkpoint", checkpoint)
    card = json.loads((checkpoint / "card.json").read_text(encoding="utf-8"))
    card["config"]["tasks"][0]["data_files"] = [data_file]
    card["config"]["data"]["allow_pickle"] = True
    card["config"]["base_dir"] = base_dir if base_dir is not None else ""
    (checkpoint / "card.json").write_text(json.dumps(card), encoding="utf-8")
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    config["model"]["tasks"][0]["data_files"] = [data_file]
    (checkpoint / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return checkpoint


@pytest.mark.parametrize("where", ["relative", "absolute", "relative_to_recorded_base_dir"])
def test_finetune_never_unpickles_data_named_in_a_checkpoint(tiny_run, tmp_path, marker, capsys, monkeypatch, where):
    elsewhere = tmp_path / "their_folder"
    data_file = {"relative": "data.pkl", "absolute": str(tmp_path / "data.pkl")}.get(where, "data.pkl")
    base_dir = str(elsewhere) if where == "relative_to_recorded_base_dir" else None
    checkpoint = shared_checkpoint(tmp_path, tiny_run, data_file, base_dir=base_dir)
    expected = {
        "relative": checkpoint / "data.pkl",
        "absolute": tmp_path / "data.pkl",
        "relative_to_recorded_base_dir": elsewhere / "data.pkl",
    }[where]
    plant(expected, marker)
    monkeypatch.chdir(expected.parent)  # the working directory holds it too: it must not matter
    before = snapshot(checkpoint)
    code = main(["finetune", "--checkpoint", str(checkpoint), "--tasks", "hea_phase",
                 "--out", str(tmp_path / "tuned"), "--no-progress"])  # fmt: skip
    assert_refused(code, capsys.readouterr().err, str(expected), "never when named in a checkpoint")
    assert not marker.exists()
    assert snapshot(checkpoint) == before
    assert not (tmp_path / "tuned" / "checkpoint").exists()


def test_relative_paths_in_a_checkpoint_resolve_against_it_not_the_working_directory(
    tiny_run, tiny_data, tmp_path, monkeypatch, capsys
):
    checkpoint = shared_checkpoint(tmp_path, tiny_run, "bulk.csv")
    shutil.copy(tiny_data / "bulk.csv", checkpoint / "bulk.csv")
    decoy = tmp_path / "cwd"
    decoy.mkdir()
    (decoy / "bulk.csv").write_text("nothing,useful\n1,2\n", encoding="utf-8")  # would fail: no formula column
    monkeypatch.chdir(decoy)
    out = tmp_path / "tuned"
    assert main(["finetune", "--checkpoint", str(checkpoint), "--tasks", "hea_phase", "--out", str(out),
                 "--max-epochs", "1", "--no-progress"]) == 0, capsys.readouterr().err  # fmt: skip
    card = load_checkpoint(out).card
    assert card.config["base_dir"] == str(checkpoint.resolve())
    assert "allow_pickle" not in card.config["data"] or card.config["data"]["allow_pickle"] is False


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [("", "."), ("data", "data"), ("/abs/folder", "/abs/folder"), ("../up", "../up")],
)
def test_recorded_base_dir_resolves_against_the_record(tmp_path, recorded, expected):
    record = tiny_config_dict(tmp_path) | {"base_dir": recorded}
    record["data"]["allow_pickle"] = True
    anchor = tmp_path / "checkpoint"
    config = TrainConfig.from_record(record, anchor=anchor)
    assert config.base_dir == str((anchor / expected).resolve())
    assert config.data.allow_pickle is False


# ------------------------------------------------------------------------------------------ fm predict / design
@pytest.mark.parametrize("name", ["x.pkl", "x.pd.xz", "x.pickle"])
def test_predict_never_unpickles_its_input(tiny_run, tmp_path, marker, capsys, name):
    path = plant(tmp_path / name, marker)
    before = path.read_bytes()
    code = main(["predict", "--checkpoint", str(tiny_run), "--input", str(path), "--output", str(tmp_path / "o.csv")])
    assert_refused(code, capsys.readouterr().err, str(path), "pickled files are never read")
    assert not marker.exists() and not (tmp_path / "o.csv").exists()
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", ["x.csv", "x.parquet"])
def test_predict_input_with_a_pickle_inside_a_csv_or_parquet_name_is_not_unpickled(
    tiny_run, tmp_path, marker, capsys, name
):
    path = plant(tmp_path / name, marker)
    code = main(["predict", "--checkpoint", str(tiny_run), "--input", str(path), "--output", str(tmp_path / "o.csv")])
    assert_refused(code, capsys.readouterr().err, name)
    assert not marker.exists() and not (tmp_path / "o.csv").exists()


def test_design_replay_of_a_pickle_is_refused_naming_the_file(tiny_run, tmp_path, marker, capsys):
    path = plant(tmp_path / "results.json", marker)
    code = main(["design", "--checkpoint", str(tiny_run), "--replay", str(path), "--out", str(tmp_path / "d")])
    assert_refused(code, capsys.readouterr().err, path.name, "not UTF-8")
    assert not marker.exists() and not (tmp_path / "d").exists()


def test_a_pickle_given_as_the_training_config_is_not_unpickled(tmp_path, marker, capsys):
    path = plant(tmp_path / "train.yaml", marker)
    code = main(["train", "--config", str(path), "--out", str(tmp_path / "run")])
    assert code == 2 and "Traceback" not in capsys.readouterr().err  # the config reader's message: validation part
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ checkpoint folders
@pytest.mark.parametrize("name", ["model.pt", "last.ckpt", "model.pkl", "model.safetensors", "pytorch_model.bin"])
def test_load_checkpoint_never_unpickles_a_model_file(tiny_run, tmp_path, marker, name):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    plant(folder / name, marker)
    with pytest.raises(CheckpointError, match="not an fm_engine checkpoint"):
        load_checkpoint(folder)  # no config.json
    with pytest.raises(CheckpointError, match="never loaded"):
        load_checkpoint(folder / name)  # the file itself
    shutil.copy(tiny_run / "checkpoint" / "config.json", folder / "config.json")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(folder)  # a config, but the weights are a pickle (or missing)
    assert not marker.exists()


def test_a_non_utf8_compositions_file_names_the_file(tiny_run, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_run / "checkpoint", checkpoint)
    (checkpoint / "compositions.csv").write_bytes(b"composition,split,tasks\nFe\xe9,train,a\n")
    with pytest.raises(CheckpointError, match="compositions.csv: not UTF-8"):
        read_compositions(checkpoint)


def test_a_non_utf8_card_is_left_out_not_a_crash(tiny_run, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_run / "checkpoint", checkpoint)
    (checkpoint / "card.json").write_bytes(b'{"name": "\xff"}')
    loaded = load_checkpoint(checkpoint)
    assert loaded.card is None and "the model card is unreadable" in loaded.card_problem


def test_a_non_utf8_data_file_names_the_file(tiny_data, tmp_path, capsys):
    (tmp_path / "latin1.csv").write_bytes("formula,target\nFe2O3,1.0\nNiO,caf\xe9\n".encode("latin-1"))
    config = write_yaml(tmp_path / "train.yaml", pickle_config(tiny_data, "latin1.csv"))
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    assert_refused(code, capsys.readouterr().err, "latin1.csv: not UTF-8 text", "0xe9")


# ------------------------------------------------------------------------------------------ fm-trainer
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("resume_from", [None, "crafted.ckpt"])
def test_fm_trainer_refuses_a_pickle_and_a_crafted_ckpt_path(tiny_data, tmp_path, marker, capsys, monkeypatch,
                                                              resume_from):  # fmt: skip
    from fm_engine.trainer_cli import main as trainer_main

    monkeypatch.setattr(sys, "argv", ["fm-trainer"])
    plant(tmp_path / "data.pkl", marker)
    (tmp_path / "crafted.ckpt").write_bytes(crafted_checkpoint(marker))
    config = {
        "data": {"class_path": "fm_engine.trainer_cli.FMDataModule",
                 "init_args": {"tasks": [{"name": "y", "data_files": ["data.pkl"]}]}},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path / "root")},
    }  # fmt: skip
    args = ["fit", "--config", str(write_yaml(tmp_path / "fit.yaml", config))]
    if resume_from:
        args.append(f"--ckpt_path={tmp_path / resume_from}")
    assert trainer_main(args) == 2
    err = capsys.readouterr().err
    expected = (
        f"{tmp_path / 'crafted.ckpt'}: refused to resume" if resume_from else f"{tmp_path / 'data.pkl'}: a pickled"
    )
    assert "Traceback" not in err and f"fm-trainer: error: {expected}" in err, err[-2000:]
    assert not marker.exists()
    assert not (tmp_path / "root" / "checkpoint").exists()


# ------------------------------------------------------------------------------------------ the workbench
def wait_for_error(run_dir: Path, seconds: float = CEILING_S) -> str:
    """The run's final state once its process has printed its ``error:`` line (or ended otherwise)."""
    from workbench.runs import run_info

    deadline = time.time() + seconds
    log = run_dir / "train.log"
    while (state := run_info(run_dir).state) not in ("done", "failed", "cancelled") or (
        state == "failed" and "error:" not in log.read_text(encoding="utf-8")
    ):
        assert time.time() < deadline, f"{run_dir} still {state}"
        time.sleep(0.3)
    return state


def test_workbench_upload_of_a_pickle_is_read_as_csv_only(marker, tmp_path):
    from workbench.components.uploads import read_csv_bytes

    frame, message = read_csv_bytes(pickle.dumps(Payload(marker)))
    assert frame is None and message
    assert not marker.exists()


def test_workbench_training_and_finetune_never_unpickle(tiny_run, tiny_data, tmp_path, marker, monkeypatch):
    """Both workbench launchers (Train tab, Fine-tune tab) as real processes, started together."""
    from workbench import runs
    from workbench.runs import start_finetune, start_training

    monkeypatch.setenv("FM_WORKSPACE", str(tmp_path / "workspace"))
    plant(tmp_path / "data.pkl", marker)
    checkpoint = shared_checkpoint(tmp_path, tiny_run, "data.pkl")
    plant(checkpoint / "data.pkl", marker)
    config = pickle_config(tiny_data, str(tmp_path / "data.pkl"), allow_pickle=True)  # the opt-in is stripped
    trained = start_training(config, "crafted")
    tuned = start_finetune(checkpoint.parent, ["hea_phase"], "crafted-finetune", max_epochs=1)
    for run_dir, path in ((trained, tmp_path / "data.pkl"), (tuned, checkpoint / "data.pkl")):
        assert wait_for_error(run_dir) == "failed"
        launched = runs._CHILDREN.pop(runs._launcher(run_dir)[0])
        assert launched.wait(timeout=CEILING_S) == 2  # the CLI's exit code for a refused input
        log = (run_dir / "train.log").read_text(encoding="utf-8")
        assert f"error: {path}: a pickled table can run code" in log and "Traceback" not in log, log[-2000:]
    assert not marker.exists()
