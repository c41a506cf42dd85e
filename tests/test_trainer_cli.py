"""``fm-trainer`` (LightningCLI): a real fit from a YAML config, the exported checkpoint, strict keys."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fm_engine.checkpoints import load_checkpoint
from fm_engine.cli import main as fm_main
from fm_engine.predict import predict_frame
from fm_engine.trainer_cli import AVERAGE_KEY, FMLightningModel, main
from fm_engine.training import TrainConfig
from fm_engine.training.evaluate import evaluate
from fm_engine.training.trainer import build_datamodule
from tests.ceiling import CEILING_S

# lightning 2.6 calls jsonargparse APIs that jsonargparse >= 4.49 marks deprecated (hidden outside pytest)
pytestmark = pytest.mark.filterwarnings("ignore::jsonargparse._deprecated.JsonargparseDeprecationWarning")


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``main(args)``: no pytest arguments in sys.argv (LightningCLI warns about both)."""
    monkeypatch.setattr(sys, "argv", ["fm-trainer"])


def write_fe_ni(folder: Path) -> Path:
    """60 Fe-Ni alloys: a smooth density-like target (g/cm3) and the BCC/FCC phase (BCC when Fe-rich)."""
    fe = np.arange(20, 80)
    frame = pd.DataFrame(
        {
            "formula": [f"Fe{i}Ni{100 - i}" for i in fe],
            "density": np.round(8.90 - 0.0115 * fe + 0.05 * np.sin(fe / 7.0), 4),
            "phase": np.where(fe > 65, "BCC", "FCC"),
        }
    )
    frame.to_csv(folder / "fe_ni.csv", index=False)
    return folder / "fe_ni.csv"


def config_dict() -> dict[str, Any]:
    return {
        "seed_everything": 3,
        "model": {
            "class_path": "fm_engine.trainer_cli.FMLightningModel",
            "init_args": {
                "encoder": {"type": "mlp", "hidden_dims": [32, 16]},
                "autoencoder": {"hidden_dims": [32]},
                "lr": 0.005,
            },
        },
        "data": {
            "class_path": "fm_engine.trainer_cli.FMDataModule",
            "init_args": {
                "tasks": [
                    {
                        "name": "density",
                        "data_files": ["fe_ni.csv"],
                        "composition_column": "formula",
                        "unit": "g/cm3",
                    },
                    {
                        "name": "phase",
                        "type": "classification",
                        "data_files": ["fe_ni.csv"],
                        "composition_column": "formula",
                        "class_weights": "balanced",
                    },
                ],  # fmt: skip
                "descriptor": {"kind": "stats"},
                "batch_size": 16,
            },
        },
        "trainer": {"max_epochs": 50, "accelerator": "cpu", "enable_progress_bar": False},
        "export": {"name": "fe-ni"},
    }


def write_config(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def trainer_command() -> list[str]:
    """The installed ``fm-trainer`` script when present (after ``pip install -e .``), else ``python -m``."""
    script = Path(sys.executable).parent / "fm-trainer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fm_engine.trainer_cli"]


def test_fit_from_yaml_writes_a_checkpoint_that_loads_and_predicts(tmp_path: Path) -> None:
    config_dir = tmp_path / "project"
    config_dir.mkdir()
    write_fe_ni(config_dir)  # data_files are relative: resolved against the config file's folder
    config = write_config(config_dir, config_dict())
    run = tmp_path / "run"
    command = trainer_command() + ["fit", "--config", str(config), "--trainer.max_epochs=2",
                                   f"--trainer.default_root_dir={run}"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=CEILING_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint:" in result.stdout

    loaded = load_checkpoint(run)  # the run folder (<default_root_dir>) resolves to <run>/checkpoint
    assert loaded.path == run / "checkpoint"
    tasks = loaded.model.tasks
    assert set(tasks) == {"density", "phase"}
    assert tasks["density"].unit == "g/cm3"
    assert tasks["phase"].classes == ["BCC", "FCC"]
    assert loaded.config.descriptor.kind == "stats"

    card = loaded.card
    assert card.name == "fe-ni" and card.entry_point == "fm-trainer"
    assert card.training.epochs_run == 2
    assert card.config["trainer"]["max_epochs"] == 2  # the command-line override is what ran
    assert card.config["model"]["encoder"]["hidden_dims"] == [32, 16]
    density, phase = card.task("density"), card.task("phase")
    assert density.compositions["train"] > 0
    for metrics in (density.val_metrics, density.test_metrics):
        assert set(metrics) >= {"mae", "rmse", "n"} and math.isfinite(metrics["mae"])
    for metrics in (phase.val_metrics, phase.test_metrics):
        assert 0.0 <= metrics["accuracy"] <= 1.0
    assert "g/cm3" in (run / "checkpoint" / "card.md").read_text(encoding="utf-8")
    assert set(loaded.compositions()["tasks"].str.split(";").explode()) == {"density", "phase"}
    assert 0 <= density.test_distance_to_training["max"] <= 1

    frame = pd.DataFrame({"composition": ["Fe50Ni50", "Fe3Ni", "Xx2"]})
    predicted = predict_frame(loaded, frame)
    assert np.isfinite(predicted.loc[:1, "density [g/cm3]"].astype(float)).all()
    assert set(predicted.loc[:1, "phase"]) <= {"BCC", "FCC"}
    assert "unknown element" in predicted.loc[2, "error"]

    # and the same checkpoint through ``fm predict``
    source, out = tmp_path / "in.csv", tmp_path / "predicted.csv"
    frame.to_csv(source, index=False)
    assert fm_main(["predict", "--checkpoint", str(run), "--input", str(source), "--output", str(out)]) == 0
    assert len(pd.read_csv(out)) == 3

    saved = yaml.safe_load(next(run.rglob("config.yaml")).read_text(encoding="utf-8"))  # LightningCLI's copy
    assert saved["data"]["init_args"]["base_dir"] == str(config_dir.resolve())
    assert json.loads((run / "checkpoint" / "config.json").read_text(encoding="utf-8"))["format"]


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    data[last] = value


@pytest.mark.parametrize(
    ("dotted", "named"),
    [
        ("data.init_args.val_fraction", "val_fraction"),  # a typo of val_ratio
        ("trainer.max_epoch", "max_epoch"),
        ("model.init_args.encoder.hidden_dim", "hidden_dim"),  # inside a dict argument
        ("export.restore", "restore"),
        ("seed_everythin", "seed_everythin"),
    ],
)
def test_an_unknown_config_key_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dotted: str, named: str
) -> None:
    write_fe_ni(tmp_path)
    data = config_dict()
    _set(data, dotted, 1)
    config = write_config(tmp_path, data)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path / 'run'}"])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_the_sample_config_parses(capsys: pytest.CaptureFixture[str]) -> None:
    sample = Path(__file__).resolve().parents[1] / "samples" / "lightning_cli_config.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(sample), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"] == "fm_engine.trainer_cli.FMDataModule"
    assert [t.get("bundled") for t in printed["data"]["init_args"]["tasks"]] == ["bulk_modulus", "hea_phase"]


def test_fit_with_weight_averaging_exports_the_averaged_weights(tmp_path: Path) -> None:
    write_fe_ni(tmp_path)
    data = config_dict()
    data["model"]["init_args"]["ema_decay"] = 0.9
    config = write_config(tmp_path, data)
    run = tmp_path / "run"
    assert main(["fit", "--config", str(config), "--trainer.max_epochs=3", f"--trainer.default_root_dir={run}"]) == 0

    loaded = load_checkpoint(run)
    assert loaded.card.config["trainer"]["ema_decay"] == 0.9
    # the exported weights are the ones whose validation loss was the best logged one (the average's)
    train_config = TrainConfig.from_dict(loaded.card.config)
    dm = build_datamodule(train_config)
    dm.setup()
    assert evaluate(loaded.model, dm, "val").loss == pytest.approx(loaded.card.training.best_val_loss, rel=1e-5)
    # Lightning's own checkpoint carries the average for ``fit --ckpt_path``
    saved = torch.load(next(run.rglob("*.ckpt")), weights_only=True)
    assert saved[AVERAGE_KEY]["updates"] == saved["global_step"] > 0


def test_a_bad_weight_averaging_decay_is_refused() -> None:
    with pytest.raises(ValueError, match="ema_decay must be between 0 and 1"):
        FMLightningModel(ema_decay=1.5)


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("trainer", 5, "trainer: expected a mapping of settings, got 5"),
        ("model", 5, "model: expected FMLightningModel or NoneType, got 5"),
        ("data", [1], "data: expected FMDataModule or NoneType, got [1]"),
        ("model.init_args.lr", "fast", "model.lr: Expected a float. Got value: fast"),
        ("data.init_args.tasks", 3, "data.tasks: Expected a list. Got value: 3"),
        ("seed_everything", "abc", "seed_everything: expected bool or int, got abc"),
    ],
    ids=["trainer_number", "model_number", "data_list", "lr_word", "tasks_number", "seed_word"],
)
def test_a_wrong_type_is_one_line_naming_the_key_before_any_data_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dotted: str, value: Any, expected: str
) -> None:
    data = config_dict()  # its data file fe_ni.csv is not written: reading it would fail differently
    _set(data, dotted, value)
    config = write_config(tmp_path, data)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err == [f"fm-trainer fit: error: {expected}"]
    assert not (tmp_path / "run").exists()
