"""Write the fixtures of the output-unchanged tests (``tests/regression/fixtures``).

Regenerate ONLY when an output change is intended (and say so in the commit message): the fixtures are the
outputs of the code at the time they were made, and the tests in ``test_outputs_unchanged.py`` fail when
``fm train``, ``fm demo``, ``fm predict`` or ``fm design`` (also ``--replay``) give different numbers on the same
seed, or when the committed checkpoint no longer loads. Run from the repository root::

    PYTHONPATH=. .venv/bin/python -m tests.regression.make_fixtures            # predict, design, demo outputs
    PYTHONPATH=. .venv/bin/python -m tests.regression.make_fixtures --retrain  # also data, train.yaml, checkpoint

Without ``--retrain`` the committed checkpoint is kept (it is the "a checkpoint written by an earlier version
still loads" fixture) and the other outputs are made from it; retrain only when ``fm train``'s output changes on
purpose.

What it writes (about 250 KB in all):

* ``data/*.csv`` and ``train.yaml``: three tiny tasks (a regression, a classification and a sequence task, rows
  taken from the bundled datasets) and a tiny model with the autoencoder and weight averaging;
* ``checkpoint/``: the checkpoint ``fm train --config train.yaml`` makes (the load-compatibility fixture: a
  checkpoint written by this code version must keep loading);
* ``predict_input.csv`` / ``predict_expected.csv``: ``fm predict`` of a few formulas (a bad one among them) with a
  temperature grid for the sequence task;
* ``design_<name>.yaml`` / ``design_<name>/{recipes.csv,results.json}``: ``fm design`` on the checkpoint, one
  run on the composition path and one on the latent path;
* ``demo_expected.json``: the metrics of ``fm demo`` shortened to ``DEMO_EPOCHS`` epochs (same data, model, seed).

Every command runs in a subprocess with one torch thread (``FM_NUM_THREADS=1``, the default policy): results
differ in their last bits between thread counts, and are bit-identical between runs with the same count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from fm_engine.foundation import FOUNDATION_ENV
from tests.conftest import NO_FOUNDATION

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEMO_EPOCHS = 2  # FM_DEMO_MAX_EPOCHS: the demo's data, model and seed, 2 of its epochs (about 10 s)
PREDICT_T_GRID = "300,900"  # K, for the sequence task
# Keys of a metrics.jsonl epoch row that depend on the clock, not on the numbers.
CLOCK_KEYS = {"time", "epoch_seconds", "eta_seconds", "samples_per_s", "wall_time_s"}

TRAIN_CONFIG: dict[str, Any] = {
    "name": "regression-fixture",
    "seed": 11,
    "tasks": [
        {
            "name": "bulk_modulus",
            "type": "regression",
            "data_files": ["data/bulk.csv"],
            "composition_column": "formula",
            "data_column": "target",
            "unit": "GPa",
            "loss": "huber",  # the default of the code that wrote the committed checkpoint (l1 since issue 16)
        },
        {"name": "hea_phase", "type": "classification", "data_files": ["data/phase.csv"], "class_weights": "balanced"},
        {
            "name": "yield_strength",
            "type": "kernel_regression",
            "data_files": ["data/yield.csv"],
            "t_column": "temperature",
            "unit": "MPa",
            "t_unit": "K",
            "n_kernels": 4,
        },
    ],
    # standardise_inputs / val_ratio: the settings of the code that wrote the committed checkpoint, pinned so
    # that `fm train` keeps reproducing it (the defaults since issue 16: standardised inputs, recipe by data size)
    "model": {
        "encoder": {"type": "mlp", "hidden_dims": [32, 16]},
        "autoencoder": {"hidden_dims": [32]},
        "standardise_inputs": False,
    },
    "data": {"batch_size": 64, "val_ratio": 0.1},
    "trainer": {"max_epochs": 10, "patience": 20, "ema_decay": 0.9, "progress_bar": False},
}

PREDICT_FORMULAS = [
    "Fe2O3", "NbMoTaW", "Al0.1CoCrFeNi", "TiZrHfNbTa", "SiC", "Cu", "NaCl", "not-a-formula", "Al0.5Ti0.5",
    "MoNbTaVW", "LiFePO4", "", "Ni3Al", "CrMnFeCoNi",
]  # fmt: skip

DESIGNS: dict[str, dict[str, Any]] = {
    "composition": {
        "targets": [
            {"task": "bulk_modulus", "value": 200},
            {"task": "hea_phase", "classes": ["BCC"], "direction": "high"},
            {"task": "yield_strength", "points": [[300, 1200], [900, 800]], "weight": 0.5},
        ],
        "method": "composition",
        "constraints": {
            "allowed_elements": ["Ti", "V", "Cr", "Zr", "Nb", "Mo", "Hf", "Ta", "W", "Al"],
            "max_elements": 4,
            "fixed_amounts": {"Al": 0.1},
            "min_nonzero_weight": 0.05,
        },
        "seeds": {"source": "data", "n": 4, "strategy": "random"},
        "steps": 40,
        "random_seed": 3,
    },
    "latent": {
        "targets": [{"task": "bulk_modulus", "direction": "high"}, {"task": "hea_phase", "classes": ["FCC"]}],
        "method": "latent",
        "constraints": {"allowed_elements": "alloy_palette", "max_elements": 5},
        "seeds": {"source": "random", "n": 3},
        "steps": 30,
        "random_seed": 5,
    },
}


def fm_environment() -> dict[str, str]:
    """This process's environment with the default thread policy and one torch thread (see the module doc)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FM_THREAD_POLICY")}
    env["FM_NUM_THREADS"] = "1"
    env[FOUNDATION_ENV] = str(NO_FOUNDATION)  # from scratch, as the tests run (tests/conftest.py)
    return env


def run_fm(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """``python -m fm_engine.cli ARGS`` in a subprocess; its stdout. Fails with the command's output."""
    command = [sys.executable, "-m", "fm_engine.cli", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env=env or fm_environment(), cwd=cwd)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def write_data(folder: Path) -> None:
    """The tiny training files (user-format columns for bulk_modulus, the bundled format for the others)."""
    from fm_engine.datasets import bundled_task

    folder.mkdir(parents=True, exist_ok=True)
    bulk = bundled_task("bulk_modulus").frame().head(200)
    bulk = bulk.rename(columns={"composition": "formula", "bulk_modulus": "target"})[["formula", "target"]]
    bulk.to_csv(folder / "bulk.csv", index=False)
    bundled_task("hea_phase").frame().head(150).to_csv(folder / "phase.csv", index=False)
    bundled_task("yield_strength").frame().to_csv(folder / "yield.csv", index=False)


def train_summary(run_or_checkpoint: Path) -> dict[str, Any]:
    """The numbers of a training run's model card that do not depend on the clock or the machine."""
    card_path = run_or_checkpoint / "card.json"
    if not card_path.exists():
        card_path = run_or_checkpoint / "checkpoint" / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    tasks = {
        t["name"]: {key: t.get(key) for key in ("compositions", "test_metrics", "test_metrics_ci95", "val_metrics")}
        for t in card["tasks"]
    }
    training = {key: card["training"][key] for key in ("epochs_run", "best_epoch", "best_val_loss")}
    return {"tasks": tasks, "split": card["split"], "n_parameters": card["n_parameters"], "training": training}


def demo_summary(run_dir: Path) -> dict[str, Any]:
    """The epoch rows of ``metrics.jsonl`` (without clock values) and the model card's numbers."""
    epochs = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("kind") == "epoch":
            epochs.append({k: v for k, v in row.items() if k not in CLOCK_KEYS})
    return {"epochs": epochs, **train_summary(run_dir)}


def run_demo(out: Path) -> dict[str, Any]:
    env = fm_environment() | {"FM_DEMO_MAX_EPOCHS": str(DEMO_EPOCHS)}
    run_fm("demo", "--out", out, "--no-progress", env=env)
    return demo_summary(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retrain", action="store_true", help="also rewrite data/, train.yaml and checkpoint/")
    retrain = parser.parse_args(argv).retrain or not (FIXTURES / "checkpoint").exists()
    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if retrain:
            write_data(FIXTURES / "data")
            (FIXTURES / "train.yaml").write_text(yaml.safe_dump(TRAIN_CONFIG, sort_keys=False), encoding="utf-8")
            run_fm("train", "--config", FIXTURES / "train.yaml", "--out", work / "run", "--no-progress")
            shutil.rmtree(FIXTURES / "checkpoint", ignore_errors=True)
            shutil.copytree(work / "run" / "checkpoint", FIXTURES / "checkpoint")

        predict_input = FIXTURES / "predict_input.csv"
        predict_input.write_text("formula\n" + "\n".join(f'"{f}"' for f in PREDICT_FORMULAS) + "\n", encoding="utf-8")
        run_fm("predict", "--checkpoint", FIXTURES / "checkpoint", "--input", predict_input,
               "--output", FIXTURES / "predict_expected.csv", "--composition-column", "formula",
               "--t-grid", PREDICT_T_GRID, "--no-progress")  # fmt: skip

        for name, config in DESIGNS.items():
            config_path = FIXTURES / f"design_{name}.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            out = work / f"design_{name}"
            run_fm("design", "--checkpoint", FIXTURES / "checkpoint", "--config", config_path, "--out", out,
                   "--no-progress")  # fmt: skip
            expected = FIXTURES / f"design_{name}"
            shutil.rmtree(expected, ignore_errors=True)
            expected.mkdir()
            for file in ("recipes.csv", "results.json"):
                shutil.copy(out / file, expected / file)

        demo = run_demo(work / "demo")
        (FIXTURES / "demo_expected.json").write_text(json.dumps(demo, indent=1) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"wrote {FIXTURES} ({size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()
