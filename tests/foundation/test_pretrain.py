"""`fm pretrain`: masked multi-task training over a corpus folder (tiny synthetic corpora, real training)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fm_engine.checkpoints import load_checkpoint
from fm_engine.cli import main
from fm_engine.columns import split_unit
from fm_engine.foundation.corpus import load_corpus
from fm_engine.training import RunDirectory, TrainConfig
from fm_engine.training.trainer import build_datamodule, build_model
from tests.ceiling import CEILING_S
from tests.foundation.synthetic import write_synthetic_corpus
from tests.training.test_process import epochs_logged, wait_for

TINY = {
    "name": "tiny-pretrain",
    "seed": 3,
    "model": {"encoder": {"hidden_dims": [32]}, "autoencoder": {"enabled": False}},
    "data": {"batch_size": 64},
    "trainer": {"max_epochs": 3, "progress_bar": False},
}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 compositions, 3 regressions (90 / 50 / 10 % labelled) and a classification (40 %)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus"
    write_synthetic_corpus(path, 400, seed=5)
    return path


def write_config(folder: Path, **changes) -> Path:
    config = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        config[key] = value if not isinstance(value, dict) else config.get(key, {}) | value
    path = folder / "pretrain.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def pretrain_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fm_engine.cli", "pretrain", "--no-progress", *args]


def test_pretrain_trains_every_corpus_task_with_its_units(corpus_dir, tmp_path, capsys):
    out = tmp_path / "run"
    config = write_config(tmp_path)
    assert main(["pretrain", "--config", str(config), "--corpus", str(corpus_dir), "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    corpus = load_corpus(corpus_dir)
    run = RunDirectory(out)
    assert run.read_status()["state"] == "done"
    assert epochs_logged(run) == [0, 1, 2]
    checkpoint = load_checkpoint(out)
    assert list(checkpoint.model.tasks) == [task.name for task in corpus.tasks]
    for task in corpus.tasks:
        spec = checkpoint.model.tasks[task.name]
        assert (spec.type.value, spec.unit, spec.classes) == (task.type, task.unit, list(task.classes or []) or None)
        card_task = checkpoint.card.task(task.name)
        labelled = corpus.frame[task.name].notna() & (corpus.frame["split"] == "test")
        assert card_task.test_metrics["n"] == labelled.sum() > 0  # the corpus's own split and labels
    # the per-task record of training compositions is the corpus's labelled rows
    table = pd.read_csv(out / "checkpoint" / "compositions.csv")
    names = [t.name for t in corpus.tasks]
    labelled = corpus.frame.loc[corpus.frame[names].notna().any(axis=1)]
    assert set(table["composition"]) == set(labelled["composition"]) and len(labelled) < len(corpus.frame)
    first = labelled.iloc[0]
    row = table.set_index("composition").loc[first["composition"]]
    assert row["split"] == first["split"]
    assert row["tasks"].split(";") == [name for name in names if not np.isnan(first[name])]
    # predictions come out in the corpus tasks' units for new compositions
    frame = checkpoint.predict(["Fe2O3", "NaCl"])
    assert {"formation_energy", "band_gap", "bulk_modulus"} <= {split_unit(c)[0] for c in frame.columns}


def test_descriptors_are_the_corpus_cache_and_masked_labels_do_not_count(corpus_dir, tmp_path):
    config = TrainConfig.from_dict(TINY | {"data": {"batch_size": 64, "corpus": str(corpus_dir)}})
    dm = build_datamodule(config)
    dm.setup()
    assert isinstance(dm.x, np.memmap)  # memory-mapped from descriptors/<spec-key>.npy, not recomputed
    model = build_model(config, dm)
    batch = dm.dataset("train").__getitems__(list(range(64)))
    losses = model.task_losses(batch.x, batch.targets, batch.masks, batch.t)
    for name, target in batch.targets.items():
        mask = batch.masks[name]
        assert 0 < int(mask.sum()) < 64 or name == "bulk_modulus"
        target[~mask] = 7 if target.dtype == torch.int64 else 1e6  # garbage where the label is missing
    again = model.task_losses(batch.x, batch.targets, batch.masks, batch.t)
    assert {k: float(v) for k, v in losses.items()} == {k: float(v) for k, v in again.items()}
    none = {name: torch.zeros_like(mask) for name, mask in batch.masks.items()}
    assert not set(model.task_losses(batch.x, batch.targets, none, batch.t)) & set(model.tasks)


def test_a_subset_of_corpus_tasks_with_weights(corpus_dir, tmp_path):
    tasks = [{"corpus": "band_gap", "loss_weight": 2.0}, {"corpus": "is_metal", "class_weights": "balanced"}]
    config = TrainConfig.from_dict(TINY | {"tasks": tasks, "data": {"corpus": str(corpus_dir)}})
    specs = config.task_specs()
    assert [(s.name, s.loss_weight, s.unit) for s in specs] == [("band_gap", 2.0, "eV"), ("is_metal", 1.0, "")]
    with pytest.raises(ValueError, match=r"tasks\[0\]\.corpus: 'density' is not a task of"):
        TrainConfig.from_dict(TINY | {"tasks": [{"corpus": "density"}], "data": {"corpus": str(corpus_dir)}})
    with pytest.raises(ValueError, match=r"tasks\[0\]: with data.corpus, a task entry is"):
        TrainConfig.from_dict(TINY | {"tasks": [{"name": "x"}], "data": {"corpus": str(corpus_dir)}})


@pytest.mark.parametrize("damage", ["missing", "no_tasks_file", "missing_column"])
def test_a_bad_corpus_folder_is_one_error_before_training(corpus_dir, tmp_path, damage, capsys):
    bad = tmp_path / "bad"
    if damage != "missing":
        bad.mkdir()
        for name in ("corpus.parquet", "tasks.json", "manifest.json"):
            (bad / name).write_bytes((corpus_dir / name).read_bytes())
    if damage == "no_tasks_file":
        (bad / "tasks.json").unlink()
    if damage == "missing_column":
        tasks = json.loads((bad / "tasks.json").read_text())
        tasks["tasks"].append(tasks["tasks"][0] | {"name": "density", "unit": "g/cm3"})
        (bad / "tasks.json").write_text(json.dumps(tasks))
    out = tmp_path / "run"
    code = main(["pretrain", "--config", str(write_config(tmp_path)), "--corpus", str(bad), "--out", str(out)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and error[0].startswith("error: ")
    expected = {"missing": "no corpus folder there", "no_tasks_file": "tasks.json: missing",
                "missing_column": "missing column(s) density"}[damage]  # fmt: skip
    assert str(bad) in error[0] and expected in error[0]
    assert not out.exists()  # nothing started


def test_sigterm_then_resume_continues(corpus_dir, tmp_path):
    out = tmp_path / "run"
    run = RunDirectory(out)
    config = write_config(tmp_path, trainer={"max_epochs": 500, "patience": 500, "resume_every_s": 0.2})
    command = pretrain_command("--config", str(config), "--corpus", str(corpus_dir), "--out", str(out))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: len(epochs_logged(run)) >= 2 and run.resume_path.exists())
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=CEILING_S)
    assert process.returncode == 143, output
    assert "fm pretrain --out" in output and run.read_status()["state"] == "cancelled"
    done_before = max(epochs_logged(run))
    saved = yaml.safe_load(run.config_path.read_text())
    assert Path(saved["data"]["corpus"]) == corpus_dir.resolve()
    saved["trainer"]["max_epochs"] = done_before + 3
    run.config_path.write_text(yaml.safe_dump(saved))
    resumed = subprocess.run(pretrain_command("--out", str(out), "--resume"), capture_output=True, text=True,
                             timeout=CEILING_S)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    epochs = epochs_logged(run)
    assert max(epochs) > done_before and epochs == list(range(len(epochs)))
    assert run.read_status()["state"] == "done"
    assert list(load_checkpoint(out).model.tasks) == [t.name for t in load_corpus(corpus_dir).tasks]


def test_ddp_with_two_cpu_processes(corpus_dir, tmp_path):
    out = tmp_path / "ddp"
    config = write_config(tmp_path, trainer={"max_epochs": 2})
    command = pretrain_command(
        "--config", str(config), "--corpus", str(corpus_dir), "--out", str(out), "--devices", "2"
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=CEILING_S)
    assert done.returncode == 0, done.stdout + done.stderr
    card = json.loads((out / "checkpoint" / "card.json").read_text())
    assert card["training"]["devices"] == 2 and card["training"]["strategy"] == "ddp"
    assert epochs_logged(RunDirectory(out)) == [0, 1]
