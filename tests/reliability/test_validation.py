"""Catalogue: bad configs, design settings, replay files and output folders through the real ``fm`` CLI.

Every case runs ``fm_engine.cli.main`` in-process and asserts: exit code 2, exactly one ``error: ...`` line on
stderr naming the key / file / option and what was expected, no traceback, and nothing written (the output
folder is not created, or is left exactly as it was). A few cases run ``python -m fm_engine.cli`` as a real
subprocess, to prove no traceback reaches a terminal and that the YAML limits end in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from fm_engine.cli import describe_error, main
from fm_engine.config import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, read_config_file
from tests.ceiling import CEILING_S

ROOT = Path(__file__).resolve().parents[2]
TRAIN: dict[str, Any] = {
    "name": "catalogue",
    "tasks": [{"bundled": "bulk_modulus"}],
    "model": {"encoder": {"hidden_dims": [16]}, "autoencoder": {"hidden_dims": [16]}},
    "trainer": {"max_epochs": 1, "progress_bar": False},
}
DESIGN: dict[str, Any] = {"targets": [{"task": "bulk_modulus", "value": 200}], "steps": 10, "seeds": {"n": 2}}


def merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` merged in (nested mappings merged key by key; a value replaces)."""
    out = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def snapshot(folder: Path) -> dict[str, bytes] | None:
    """Every file under ``folder`` with its bytes (None if the folder does not exist)."""
    if not folder.exists():
        return None
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def assert_one_error(code: int, err: str, *expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2, err
    assert len(errors) == 1 and errors == lines[-1:], err
    assert "Traceback" not in err
    for text in expected:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"


# ---------------------------------------------------------------------- training configs
TRAIN_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("epochs_word", {"trainer": {"max_epochs": "ten"}}, ("trainer.max_epochs", "expected an integer", "'ten'")),
    ("epochs_negative", {"trainer": {"max_epochs": -5}}, ("trainer.max_epochs", "expected >= 1", "-5")),
    ("epochs_zero", {"trainer": {"max_epochs": 0}}, ("trainer.max_epochs", "expected >= 1", "got 0")),
    ("epochs_float", {"trainer": {"max_epochs": 2.5}}, ("trainer.max_epochs", "expected an integer", "2.5")),
    ("lr_word", {"optimizer": {"lr": "fast"}}, ("optimizer.lr", "expected a number", "'fast'")),
    ("lr_nan", {"optimizer": {"lr": float("nan")}}, ("optimizer.lr", "expected a finite number")),
    ("lr_negative", {"optimizer": {"lr": -0.1}}, ("optimizer.lr", "expected > 0")),
    ("hidden_negative", {"model": {"encoder": {"hidden_dims": [-4]}}}, ("model.encoder.hidden_dims[0]", ">= 1")),
    ("hidden_zero", {"model": {"encoder": {"hidden_dims": [16, 0]}}}, ("model.encoder.hidden_dims[1]", ">= 1")),
    ("hidden_word", {"model": {"encoder": {"hidden_dims": [16, "x"]}}},
     ("model.encoder.hidden_dims[1]", "expected an integer")),
    ("ae_hidden_zero", {"model": {"autoencoder": {"hidden_dims": [0]}}}, ("model.autoencoder.hidden_dims[0]",)),
    ("trainer_null", {"trainer": None}, ("trainer", "expected a mapping of settings", "None")),
    ("trainer_number", {"trainer": 5}, ("trainer", "expected a mapping of settings", "5")),
    ("model_list", {"model": [1, 2]}, ("model", "expected a mapping of settings", "[1, 2]")),
    ("model_one", {"model": [1]}, ("model", "expected a mapping of settings", "[1]")),
    ("devices_zero", {"trainer": {"devices": 0}}, ("trainer.devices", "expected >= 1")),
    ("accelerator_unknown", {"trainer": {"accelerator": "quantum"}}, ("trainer.accelerator", "expected one of")),
    ("bool_as_string", {"trainer": {"deterministic": "yes"}}, ("trainer.deterministic", "expected true or false")),
    ("val_ratio_big", {"data": {"val_ratio": 1.5}}, ("data.val_ratio", "expected in [0, 1)")),
    ("ratios_sum", {"data": {"val_ratio": 0.6, "test_ratio": 0.5}}, ("data.val_ratio + data.test_ratio", "< 1")),
    ("batch_zero", {"data": {"batch_size": 0}}, ("data.batch_size", "expected >= 1")),
    ("seed_word", {"seed": "abc"}, ("seed", "expected an integer", "'abc'")),
    ("seed_negative", {"seed": -1}, ("seed", "expected in [0, 4,294,967,295]")),
    ("scheduler", {"optimizer": {"scheduler": "linear"}}, ("optimizer.scheduler", "expected one of 'cosine', 'none'")),
    ("ema_decay", {"trainer": {"ema_decay": 1.5}}, ("trainer.ema_decay", "between 0 and 1")),
    ("unknown_key", {"trainer": {"epochs": 3}}, ("unknown key 'trainer.epochs'", "allowed:")),
    ("tasks_number", {"tasks": 5}, ("tasks", "expected a list")),
    ("task_no_name", {"tasks": [{"type": "regression", "data_files": ["x.csv"]}]}, ("tasks[0]", "missing key 'name'")),
    ("task_loss_weight", {"tasks": [{"bundled": "bulk_modulus", "loss_weight": "heavy"}]},
     ("tasks[0].loss_weight", "expected a number")),
    ("task_head_zero", {"tasks": [{"bundled": "bulk_modulus", "head_hidden_dims": [0]}]},
     ("head_hidden_dims", "sizes >= 1")),
    ("class_weights_length", {"tasks": [{"name": "phase", "type": "classification", "data_files": ["p.csv"],
                                         "classes": ["a", "b"], "class_weights": [1, 2, 3]}]},
     ("task 'phase'", "3 class_weights for 2 classes")),
    ("class_weights_word", {"tasks": [{"bundled": "hea_phase", "class_weights": "heavy"}]},
     ("class_weights", "'balanced' or a list")),
    ("masking_word", {"tasks": [{"bundled": "bulk_modulus", "task_masking_ratio": "half"}]},
     ("tasks[0].task_masking_ratio", "expected a number")),
    ("predict_idx_nested", {"tasks": [{"bundled": "bulk_modulus", "predict_idx": [["Fe"]]}]},
     ("tasks[0].predict_idx", "expected a string, a list of strings or null")),
]  # fmt: skip


@pytest.mark.parametrize("change, expected", [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_bad_training_config_is_one_line_naming_the_key(tmp_path, capsys, change, expected):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(merged(TRAIN, change)))
    out = tmp_path / "run"
    code, err = run_cli(["train", "--config", str(config), "--out", str(out)], capsys)
    assert_one_error(code, err, *expected)
    assert not out.exists()  # refused before anything was written


# A section of the wrong shape, in a config whose only task reads a data file that does not exist: the error names
# the section and what was expected, so it came from the config check, before any data was read.
SHAPE_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("trainer_number", {"trainer": 5}, ("trainer: expected a mapping of settings, got 5",)),
    ("model_list", {"model": [1]}, ("model: expected a mapping of settings, got [1]",)),
    ("data_string", {"data": "x"}, ("data: expected a mapping of settings, got 'x'",)),
    ("tasks_number", {"tasks": 3}, ("tasks: expected a list", "got 3")),
    ("descriptor_number", {"descriptor": 4}, ("descriptor: expected a mapping of settings, got 4",)),
    ("optimizer_list", {"optimizer": ["adam"]}, ("optimizer: expected a mapping of settings",)),
    ("encoder_number", {"model": {"encoder": 3}}, ("model.encoder: expected a mapping of settings, got 3",)),
    ("task_string", {"tasks": ["bulk_modulus"]}, ("tasks[0]: expected a mapping", "'bulk_modulus'")),
    ("name_list", {"name": ["a"]}, ("name: expected a string",)),
    ("unknown_section", {"trainr": {"max_epochs": 1}}, ("unknown key 'trainr'", "allowed:")),
    ("unknown_task_key", {"tasks": [{"name": "y", "data_files": ["absent.csv"], "colour": 1}]},
     ("task 'y': unknown key 'colour'", "allowed:")),
    ("d_model_nhead", {"model": {"encoder": {"type": "transformer", "d_model": 30, "nhead": 4}}},
     ("model.encoder.d_model (token width, 30) must be divisible by nhead (attention heads, 4)",)),
]  # fmt: skip


@pytest.mark.parametrize("change, expected", [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES])
def test_bad_section_is_one_named_line_before_any_data_loads(tmp_path, capsys, change, expected):
    missing_data = {"name": "y", "data_files": ["absent.csv"]}  # reading it would fail with "not found"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(merged({**TRAIN, "tasks": [missing_data]}, change)))
    out = tmp_path / "run"
    code, err = run_cli(["train", "--config", str(config), "--out", str(out)], capsys)
    assert_one_error(code, err, "config.yaml", *expected)
    assert "absent.csv" not in err and "not found" not in err  # the data file was never opened
    assert not out.exists()  # no run folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_asked_on_a_machine_without_one(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(merged(TRAIN, {"trainer": {"accelerator": "gpu"}})))
    code, err = run_cli(["train", "--config", str(config), "--out", str(tmp_path / "run")], capsys)
    assert_one_error(code, err, "trainer.accelerator", "'gpu'", "no GPU", "expected cpu or auto")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--max-epochs", "0"], ("trainer.max_epochs", "expected >= 1")),
        (["--devices", "0"], ("trainer.devices", "expected >= 1")),
        (["--max-epochs", "ten"], ("argument --max-epochs", "invalid int value", "'ten'")),
        (["--accelerator", "warp"], ("trainer.accelerator", "expected one of")),
    ],
    ids=["max_epochs_0", "devices_0", "max_epochs_word", "accelerator_word"],
)
def test_bad_command_line_override_is_one_line(tmp_path, capsys, options, expected):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(TRAIN))
    argv = ["train", "--config", str(config), "--out", str(tmp_path / "run"), *options]
    if "ten" in options:  # argparse refuses it while parsing: still one line, exit 2
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        code, err = int(exit_info.value.code), capsys.readouterr().err  # type: ignore[arg-type]
    else:
        code, err = run_cli(argv, capsys)
    assert_one_error(code, err, *expected)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- config files: syntax, encoding, limits
def deep_yaml(levels: int) -> str:
    return "tasks: " + "[" * levels + "]" * levels + "\n"


def alias_bomb(field: str = "predict_idx") -> str:
    """Nine levels of nine aliases: 9**9 (387 million) strings once expanded."""
    lines = ['a0: &a0 ["Fe","Fe","Fe","Fe","Fe","Fe","Fe","Fe","Fe"]']
    for level in range(1, 9):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + f"\ntasks: [{{bundled: bulk_modulus, {field}: *a8}}]\n"


FILE_CASES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("deep_20000", deep_yaml(20_000), ("config.yaml", f"nested deeper than {MAX_CONFIG_DEPTH} levels")),
    ("alias_bomb", alias_bomb(), ("config.yaml", "expands (through *aliases) to more than 100,000 values")),
    ("too_big", "name: x\n" + "#" * (MAX_CONFIG_BYTES + 10) + "\n", ("config.yaml", "10,000,000-byte limit")),
    ("not_utf8", "name: caf\xe9\n".encode("latin-1"), ("config.yaml", "not UTF-8 text", "line 1")),
    ("bad_yaml", "trainer: {max_epochs: 3\n", ("config.yaml", "not valid YAML")),
    ("a_list", "- 1\n- 2\n", ("config.yaml", "must be a mapping")),
    ("empty", "", ("config.yaml", "empty")),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_config_file_is_one_line_naming_the_file(tmp_path, capsys, text, expected):
    config = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    code, err = run_cli(["train", "--config", str(config), "--out", str(tmp_path / "run")], capsys)
    assert_one_error(code, err, *expected)
    assert not (tmp_path / "run").exists()


def test_missing_config_file_and_folder_as_config(tmp_path, capsys):
    code, err = run_cli(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")], capsys)
    assert_one_error(code, err, "config file not found", "nope.yaml")
    code, err = run_cli(["train", "--config", str(tmp_path), "--out", str(tmp_path / "r")], capsys)
    assert_one_error(code, err, "expected a config file, found a folder")


def test_anchors_within_the_limit_still_work(tmp_path):
    """Anchors and aliases stay usable for ordinary sharing (one task's settings reused)."""
    from fm_engine.training import TrainConfig

    config = tmp_path / "config.yaml"
    config.write_text(
        "common: &c {loss_weight: 2.0, head_hidden_dims: [8]}\n"
        "tasks:\n  - {bundled: bulk_modulus, <<: *c}\n  - {bundled: shear_modulus, <<: *c}\n"
    )
    data = read_config_file(config)
    data.pop("common")
    specs = TrainConfig.from_dict(data).task_specs()
    assert [s.loss_weight for s in specs] == [2.0, 2.0] and specs[1].head_hidden_dims == [8]


# ---------------------------------------------------------------------- design configs
DESIGN_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("value_word", {"targets": [{"task": "bulk_modulus", "value": "abc"}]},
     ("targets[0].value", "expected a number, a list of numbers or null", "'abc'")),
    ("max_elements_string", {"constraints": {"max_elements": "3"}},
     ("constraints.max_elements", "expected an integer or null", "'3'")),
    ("max_elements_float", {"constraints": {"max_elements": 2.5}}, ("constraints.max_elements", "2.5")),
    ("max_elements_zero", {"constraints": {"max_elements": 0}}, ("max_elements must be >= 1",)),
    ("random_seed_word", {"random_seed": "abc"}, ("random_seed", "expected an integer", "'abc'")),
    ("steps_huge", {"steps": 10_000_000}, ("steps", "expected in [2, 100,000]", "10000000")),
    ("seeds_huge", {"seeds": {"n": 100_000_000}}, ("seeds.n", "expected in [1, 10,000]")),
    ("seeds_split", {"seeds": {"split": "holdout"}}, ("seeds.split", "expected one of all, train, val, test")),
    ("bool_as_string", {"record_trajectory": "false"}, ("record_trajectory", "expected true or false")),
    ("method", {"method": "genetic"}, ("method", "one of 'composition', 'latent'")),
    ("targets_mapping", {"targets": {"task": "bulk_modulus"}}, ("targets", "expected a list of targets")),
    ("target_not_mapping", {"targets": ["bulk_modulus"]}, ("targets[0]", "expected a mapping of settings")),
    ("annealing", {"constraints": {"annealing_scale": 2}}, ("annealing_scale", "[0, 1]")),
    ("lr_inf", {"lr": float("inf")}, ("lr", "expected a finite number")),
    ("weight_nan", {"targets": [{"task": "bulk_modulus", "value": 1, "weight": float("nan")}]},
     ("targets[0].weight", "finite")),
    ("fixed_word", {"constraints": {"fixed_amounts": {"Fe": "lots"}}},
     ("constraints.fixed_amounts.Fe", "expected a number")),
    ("unknown_element", {"constraints": {"allowed_elements": ["Fe", "Xx"]}}, ("allowed_elements", "Xx")),
]  # fmt: skip


@pytest.mark.parametrize("change, expected", [c[1:] for c in DESIGN_CASES], ids=[c[0] for c in DESIGN_CASES])
def test_bad_design_config_is_one_line_before_the_checkpoint_loads(tmp_path, capsys, change, expected):
    config = tmp_path / "design.yaml"
    config.write_text(yaml.safe_dump(merged(DESIGN, change)))
    missing_checkpoint = tmp_path / "no-checkpoint"  # the config is checked first: no model is needed
    argv = ["design", "--checkpoint", str(missing_checkpoint), "--config", str(config), "--out", str(tmp_path / "d")]
    code, err = run_cli(argv, capsys)
    assert_one_error(code, err, *expected)
    assert "design.yaml" in err and not (tmp_path / "d").exists()


# ---------------------------------------------------------------------- design --replay files
def results_file(**change: Any) -> dict[str, Any]:
    data = {
        "format": "fm_engine-design", "format_version": 1,
        "checkpoint": {"path": "x", "checkpoint_id": "x", "weights_sha256": "0" * 64},
        "config": DESIGN, "seeds": [{"label": "s1", "fractions": {"Fe": 0.5, "Ni": 0.5}}],
    }  # fmt: skip
    data.update(change)
    return {k: v for k, v in data.items() if v != "DROP"}


REPLAY_CASES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("unknown_symbol", results_file(seeds=[{"label": "s", "fractions": {"Xx": 1.0}}]),
     ("seeds[0].fractions", "unknown element symbol 'Xx'")),
    ("amount_word", results_file(seeds=[{"label": "s", "fractions": {"Fe": "half"}}]),
     ("seeds[0].fractions.Fe", "expected an amount in [0, 1]")),
    ("no_fractions", results_file(seeds=[{"label": "s"}]), ("seeds[0]", "'fractions'")),
    ("no_config", results_file(config="DROP"), ("'config'", "missing")),
    ("no_checkpoint", results_file(checkpoint="DROP"), ("'checkpoint'", "missing")),
    ("no_hash", results_file(checkpoint={"path": "x"}), ("checkpoint.weights_sha256", "missing")),
    ("bad_config", results_file(config={**DESIGN, "steps": "many"}), ("config: steps", "expected an integer")),
    ("not_results", {"hello": 1}, ("not an fm_engine design results file",)),
    ("not_json", "{not json", ("not valid JSON",)),
    ("deep_json", "[" * 50_000 + "]" * 50_000, ("nested",)),
]  # fmt: skip


@pytest.mark.parametrize("data, expected", [c[1:] for c in REPLAY_CASES], ids=[c[0] for c in REPLAY_CASES])
def test_bad_replay_file_is_one_line_naming_the_key(tmp_path, capsys, data, expected):
    results = tmp_path / "results.json"
    results.write_text(data if isinstance(data, str) else json.dumps(data))
    before = results.read_bytes()
    argv = ["design", "--checkpoint", str(tmp_path / "no-checkpoint"), "--replay", str(results), "--out",
            str(tmp_path / "d")]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert_one_error(code, err, "results.json", *expected)
    assert results.read_bytes() == before and not (tmp_path / "d").exists()


# ---------------------------------------------------------------------- rehearsal files (shared with other tools)
REHEARSAL = (
    'name = "r"\nreplay_ratio = {ratio}\n[[tasks]]\nbundled = "bulk_modulus"\n[[tasks]]\nbundled = "band_gap"\n'
    '[trainer]\nmax_epochs = {epochs}\n[other_tool]\ncolour = "blue"\n'
)


@pytest.mark.parametrize(
    "ratio, epochs, expected",
    [
        ('"high"', "1", ("rehearsal.toml", "replay_ratio", "expected a number")),
        ("0.1", '"ten"', ("rehearsal.toml", "trainer.max_epochs", "expected an integer")),
        ("1.5", "1", ("rehearsal.toml", "replay_ratio", "[0, 1]")),
        ("0.1", "[[[[1]]]]", ("rehearsal.toml", "trainer.max_epochs", "expected an integer")),
    ],
    ids=["ratio_word", "epochs_word", "ratio_big", "epochs_nested"],
)
def test_bad_rehearsal_toml_is_one_line_and_unknown_keys_only_warn(tmp_path, capsys, ratio, epochs, expected):
    config = tmp_path / "rehearsal.toml"
    config.write_text(REHEARSAL.format(ratio=ratio, epochs=epochs))
    code, err = run_cli(["rehearsal", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert "warning: rehearsal.toml: ignoring unknown key 'other_tool'" in err  # shared file: a warning
    assert_one_error(code, err, *expected)
    assert not (tmp_path / "r").exists()


def test_rehearsal_yaml_alias_bomb_and_deep_toml_are_refused(tmp_path, capsys):
    config = tmp_path / "rehearsal.yaml"
    config.write_text(alias_bomb("description"))
    code, err = run_cli(["rehearsal", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert_one_error(code, err, "rehearsal.yaml", "more than 100,000 values")
    config = tmp_path / "deep.toml"
    config.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    code, err = run_cli(["rehearsal", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert_one_error(code, err, "deep.toml", "nested")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------- output folders, checked before any work
def occupy(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True)
    for name in names:
        if name.endswith("/"):
            (folder / name).mkdir()
            (folder / name / "weights").write_text("precious\n")
        elif name == "status.json":
            (folder / name).write_text(json.dumps({"name": "mine", "state": "done"}))
        else:
            (folder / name).write_text(f"precious {name}\n")


OUT_CASES: list[tuple[str, str, list[str], tuple[str, ...]]] = [
    ("train_file", "train", ["FILE"], ("--out", "a file is there; expected a folder")),
    ("train_under_file", "train", ["FILE", "sub"], ("is a file; expected a folder",)),
    ("train_other_files", "train", ["notes.txt", "thesis.docx"], ("holding other files", "notes.txt")),
    ("train_finished_run", "train", ["status.json", "checkpoint/"], ("already holds a run", "--resume")),
    ("demo_force_other_files", "demo", ["notes.txt"], ("holding other files", "notes.txt")),
    ("demo_force_other_run", "demo", ["status.json", "checkpoint/"], ("holds the run 'mine', not a demo run",)),
    ("finetune_file", "finetune", ["FILE"], ("a file is there; expected a folder",)),
    ("scaling_earlier_study", "scaling", ["scaling.json"], ("already holds a scaling study",)),
    ("rehearsal_earlier", "rehearsal", ["rehearsal.json"], ("already holds a rehearsal", "--resume")),
    ("design_file", "design", ["FILE"], ("a file is there; expected a folder",)),
    ("design_other_files", "design", ["data.csv"], ("holding other files", "data.csv")),
]


@pytest.mark.parametrize("command, layout, expected", [c[1:] for c in OUT_CASES], ids=[c[0] for c in OUT_CASES])
def test_unusable_output_folder_is_refused_before_any_work(tmp_path, capsys, command, layout, expected):
    out = tmp_path / "out"
    if layout[0] == "FILE":
        out.write_text("precious\n")
        target = out / layout[1] if len(layout) > 1 else out
    else:
        occupy(out, *layout)
        target = out
    before = snapshot(out)
    train_config, design_config = tmp_path / "train.yaml", tmp_path / "design.yaml"
    train_config.write_text(yaml.safe_dump(TRAIN))
    design_config.write_text(yaml.safe_dump(DESIGN))
    rehearsal = merged(TRAIN, {"tasks": [{"bundled": "bulk_modulus"}, {"bundled": "band_gap"}]})
    (tmp_path / "rehearsal.yaml").write_text(yaml.safe_dump(rehearsal))
    no_checkpoint = str(tmp_path / "no-checkpoint")  # the folder is checked before the checkpoint loads
    argv = {
        "train": ["train", "--config", str(train_config)],
        "demo": ["demo", "--force"],
        "finetune": ["finetune", "--checkpoint", no_checkpoint, "--tasks", "bulk_modulus"],
        "scaling": ["scaling", "--config", str(train_config), "--task", "bulk_modulus"],
        "rehearsal": ["rehearsal", "--config", str(tmp_path / "rehearsal.yaml")],
        "design": ["design", "--checkpoint", no_checkpoint, "--config", str(design_config)],
    }[command] + ["--out", str(target)]
    code, err = run_cli(argv, capsys)
    assert_one_error(code, err, *expected)
    assert snapshot(out) == before  # nothing written, nothing deleted


def can_write_in(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/sys").is_dir() or can_write_in(Path("/sys")), reason="no read-only folder here")
def test_read_only_output_folder_is_refused_before_any_work(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(TRAIN))
    code, err = run_cli(["train", "--config", str(config), "--out", "/sys/fm-run"], capsys)
    assert_one_error(code, err, "--out /sys/fm-run", "cannot write in /sys", "expected a writable folder")


# ---------------------------------------------------------------------- the error path itself
def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(merged(TRAIN, {"trainer": {"max_epochs": "ten"}})))
    code, err = run_cli(["--debug", "train", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    last = err.rstrip().splitlines()[-1]
    assert code == 2 and "Traceback" in err and last.startswith("error: config.yaml: trainer.max_epochs")
    code, err = run_cli(["train", "--debug", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "Traceback" in err


@pytest.mark.parametrize(
    "error, expected, code",
    [
        (PermissionError(13, "Permission denied", "/data/x.csv"), "error: /data/x.csv: Permission denied", 2),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not UTF-8", 2),
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply", 2),
        (RuntimeError("boom"), "unexpected RuntimeError: boom (run with --debug for the traceback)", 1),
    ],
    ids=["oserror", "unicode", "recursion", "unexpected"],
)
def test_error_kinds_become_one_line(error, expected, code):
    message, exit_code = describe_error(error)
    assert expected.removeprefix("error: ") in message
    assert exit_code == code and "\n" not in message


def test_class_weights_against_the_classes_found_in_the_data(tmp_path, capsys):
    """A task without ``classes`` learns them from its file: a wrong number of weights fails then, before
    any model is built or trained."""
    from fm_engine.datasets import bundled_task

    frame = bundled_task("hea_phase").frame()
    frame = frame[frame["hea_phase"].isin(["BCC", "FCC"])].head(80)
    frame.to_csv(tmp_path / "phase.csv", index=False)
    task = {"name": "phase", "type": "classification", "data_files": ["phase.csv"], "data_column": "hea_phase",
            "class_weights": [1, 2, 3]}  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(merged(TRAIN, {"tasks": [task]})))
    out = tmp_path / "run"
    code, err = run_cli(["train", "--config", str(config), "--out", str(out), "--no-progress"], capsys)
    assert_one_error(code, err, "task 'phase': class_weights: expected 2 weights (one per class: BCC, FCC), got 3")
    assert not (out / "checkpoint").exists() and not (out / "last.ckpt").exists()


# ---------------------------------------------------------------------- real subprocesses
SUBPROCESS_CASES = [
    ("deep", deep_yaml(20_000), ("nested deeper than 100 levels",)),
    ("alias_bomb", alias_bomb(), ("more than 100,000 values",)),
    ("epochs_word", yaml.safe_dump(merged(TRAIN, {"trainer": {"max_epochs": "ten"}})), ("trainer.max_epochs",)),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in SUBPROCESS_CASES], ids=[c[0] for c in SUBPROCESS_CASES])
def test_no_traceback_reaches_the_terminal(tmp_path, text, expected):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "fm_engine.cli", "train", "--config", str(config), "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=CEILING_S, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config.yaml: ") and "Traceback" not in done.stderr
    assert all(text in lines[0] for text in expected), lines[0]
    assert not (tmp_path / "r").exists()
