"""Benchmark: choose the default fine-tuning recipe (TrainConfig's ``finetune`` section and the schedule of a run
that starts from a checkpoint) on validation rows inside matbench's training folds, never on a test fold.

Protocol (per task and fold k of matbench v0.1, folds read and checked by ``bench/matbench_composition.py``)
    scoring rows   the wheel's ``val<k>.csv`` rows (carved by crabnet from matbench's training fold k, ~10 %).
                   Never trained or early-stopped on; the test fold k is never read.
    training file  the other rows of the training fold (matbench_composition's ``Fold.train``) as a
                   ``formula,target,split`` file: a seeded 10 % of them (numpy ``default_rng([INNER_SEED, k])``,
                   the same for every variant) are ``val`` (the run's early stopping and best epoch), the rest
                   ``train``. So the run has no test split of its own, like the matbench bench's "ours".
    config         the five task keys a user writes (name, type, data_files, composition_column, data_column),
                   the seed, and only the variant's settings; everything else TrainConfig's defaults.
    score          regression: MAE (eV) on the scoring rows; classification: ROC-AUC from the probabilities and
                   matbench's leaderboard ROC-AUC of the hard labels (= balanced accuracy).
    kept heads     for runs that keep the start's heads: each kept head's test metric (MAE, or ROC-AUC) on the
                   replayed corpus test rows before fine-tuning (``card.start.test_metrics_before``) and after
                   (the card's test metrics, same rows): the worst and median ratio after / before of the MAE
                   (regression heads) and the worst ROC-AUC drop (classification heads).
    time           wall seconds of ``train`` (one process, 1 torch thread unless FM_NUM_THREADS says otherwise),
                   epochs run and best epoch.

Variants (``VARIANTS``): ``scratch`` (reference), and runs from ``--start`` (a checkpoint folder; the replay corpus
``--corpus``) with the encoder learning-rate scale, encoder freezing, replay size / lean model, head learning rate
and the schedule (max_epochs / patience) varied one or two at a time around a base.

Resume: each (task, fold, variant, seed) unit writes ``bench/results/finetune_recipe/<task>/fold<k>/<unit>.json``
when it ends; a re-run skips finished units whose settings (config, start checkpoint id, wheel) are the same.

Run
    ``FM_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/finetune_recipe.py --start CKPT --corpus DIR
    [--tasks expt_gap,glass] [--folds 0] [--variants scratch,base,...] [--seeds 42]``
Writes bench/results/finetune_recipe_<start name>.json (the table's rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS_DIR, environment, print_environment, write_result
from matbench_composition import (
    TASKS,
    MatbenchData,
    MatbenchTask,
    fold_table,
    parse_ints,
    parse_names,
    read_datasets,
    user_task,
)

from fm_engine.columns import class_probability_column, with_unit
from fm_engine.foundation.build import default_wheel_path
from fm_engine.safe_io import atomic_write_json, file_sha256
from fm_engine.tasks import TaskType
from fm_engine.threads import configure_threads
from fm_engine.training.metrics import classification_metrics, regression_metrics

CACHE_DIR = RESULTS_DIR / "finetune_recipe"
INNER_SEED = 20261130  # the inner validation carve of each training fold
INNER_VAL_SHARE = 0.1

# The provisional fine-tuning settings (before this bench), written out so that a variant's meaning never changes
# with TrainConfig's defaults; every variant of a checkpoint start is these with its own changes.
BASE_FINETUNE = {"keep_start_heads": True, "replay_rows": 512, "encoder_lr_scale": 0.2, "freeze_encoder_epochs": 0,
                 "kept_heads_lr_scale": 1.0, "freeze_norm_statistics": False}  # fmt: skip

# name -> settings on top of the five task keys ("start": True: start_from = --start, replay from --corpus, the
# finetune section BASE_FINETUNE updated with the variant's "finetune"); "defaults": True: TrainConfig's defaults
# only (the default user path, whatever they are at the time of the run).
VARIANTS: dict[str, dict[str, Any]] = {
    "scratch": {"start_from": "scratch"},
    "provisional": {"start": True},
    "lr_scale_0.1": {"start": True, "finetune": {"encoder_lr_scale": 0.1}},
    "lr_scale_0.3": {"start": True, "finetune": {"encoder_lr_scale": 0.3}},
    "lr_scale_1": {"start": True, "finetune": {"encoder_lr_scale": 1.0}},
    "freeze_5": {"start": True, "finetune": {"freeze_encoder_epochs": 5}},
    "replay_128": {"start": True, "finetune": {"replay_rows": 128}},
    "lean": {"start": True, "finetune": {"keep_start_heads": False}},
    "lr_1e-3": {"start": True, "optimizer": {"lr": 1e-3}},
    "epochs_40": {"start": True, "trainer": {"max_epochs": 40, "patience": 10}},
    "norm_fixed": {"start": True, "finetune": {"freeze_norm_statistics": True}},
    "kept_slow": {"start": True, "finetune": {"kept_heads_lr_scale": 0.1}},
    "norm_kept_slow": {"start": True, "finetune": {"freeze_norm_statistics": True, "kept_heads_lr_scale": 0.1}},
    "gentle": {
        "start": True,
        "finetune": {"encoder_lr_scale": 0.1, "freeze_norm_statistics": True, "kept_heads_lr_scale": 0.1},
    },
    "defaults": {"start": True, "defaults": True},
}


def scoring_split(data: MatbenchData, task: MatbenchTask, fold: int) -> tuple[Any, np.ndarray]:
    """The run's training file (the fold's training rows with an inner seeded train / val split) and the
    scoring rows (the wheel's val<k> rows)."""
    entry = data.folds[fold]
    inner = type(entry)(entry.index, entry.train, np.zeros(0, dtype=int), entry.test)
    table = fold_table(data, inner, task)
    rng = np.random.default_rng([INNER_SEED, fold])
    val = rng.choice(len(table), size=round(INNER_VAL_SHARE * len(table)), replace=False)
    table.loc[val, "split"] = "val"
    return table, entry.val


def variant_config(task: MatbenchTask, name: str, data_file: Path, *, seed: int, start: Path, corpus: Path):
    from fm_engine.training import TrainConfig

    spec = variant_settings(name)
    values: dict[str, Any] = {
        "name": f"{task.matbench_name}-{name}",
        "seed": seed,
        "tasks": [user_task(task, data_file)],
    }
    if spec.pop("start", False):
        values["start_from"] = str(start)
        values["finetune"] = {"replay_corpus": str(corpus), **spec.pop("finetune", {})}
    values.update(spec)
    return TrainConfig.from_dict(values, base_dir=data_file.parent)


def variant_settings(name: str) -> dict[str, Any]:
    """A variant's settings on top of the five task keys (see :data:`VARIANTS`)."""
    spec = json.loads(json.dumps(VARIANTS[name]))
    if spec.pop("defaults", False):
        return spec
    if spec.get("start"):
        spec["finetune"] = {**BASE_FINETUNE, **spec.get("finetune", {})}
    return spec


def unit_path(task: str, fold: int, name: str, seed: int, settings: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return CACHE_DIR / task / f"fold{fold}" / f"{name}-seed{seed}-{digest}.json"


def kept_head_drift(card: Any) -> dict[str, Any]:
    """Worst / median ratio after / before of the kept regression heads' test MAE, worst ROC-AUC drop of the
    kept classification heads (same replayed test rows before and after)."""
    if card is None or card.start is None or not card.start.test_metrics_before:
        return {}
    after = {t.name: t.test_metrics for t in card.tasks}
    ratios, drops = {}, {}
    for head, before in card.start.test_metrics_before.items():
        now = after.get(head, {})
        if "mae" in before and "mae" in now and before["mae"] > 0:
            ratios[head] = now["mae"] / before["mae"]
        elif "roc_auc" in before and "roc_auc" in now:
            drops[head] = before["roc_auc"] - now["roc_auc"]
    worst = max(ratios, key=ratios.get) if ratios else ""
    return {
        "mae_ratio_median": float(np.median(list(ratios.values()))) if ratios else None,
        "mae_ratio_worst": ratios.get(worst), "mae_ratio_worst_head": worst,
        "roc_auc_drop_worst": max(drops.values()) if drops else None,
        "mae_ratio": ratios, "roc_auc_drop": drops,
    }  # fmt: skip


def run_unit(task: MatbenchTask, data: MatbenchData, fold: int, name: str, seed: int, *, start: Path, corpus: Path,
             path: Path) -> dict[str, Any]:  # fmt: skip
    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.config import read_config_file
    from fm_engine.training import train

    work = path.with_suffix(".work")
    data_file, run_dir = work / "data.csv", work / "run"
    resume = (run_dir / "last.ckpt").exists()
    table, scoring = scoring_split(data, task, fold)
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        table.to_csv(data_file, index=False)
    config = variant_config(task, name, data_file, seed=seed, start=start, corpus=corpus)
    began = time.perf_counter()
    result = train(config, run_dir, resume=resume, progress_bar=False)
    seconds = time.perf_counter() - began
    if result.state != "done" or result.checkpoint is None:
        raise RuntimeError(f"{task.name} fold {fold} {name}: training ended {result.state}")
    checkpoint = load_checkpoint(result.checkpoint)
    formulas = data.frame["formula"].iloc[scoring].tolist()
    y = data.frame["target"].to_numpy(dtype=float)[scoring]
    predicted = checkpoint.predict(formulas, distances=False)
    if task.type is TaskType.REGRESSION:
        column = with_unit(task.name, checkpoint.model.tasks[task.name].unit)
        score = regression_metrics(y, predicted[column].to_numpy(dtype=float))
    else:
        columns = [class_probability_column(task.name, c) for c in ("0", "1")]
        proba = np.stack([predicted[c].to_numpy(dtype=float) for c in columns], axis=1)
        score = classification_metrics(y.astype(int), proba)
        score["leaderboard_roc_auc"] = classification_metrics(y.astype(int), np.eye(2)[proba.argmax(axis=1)])["roc_auc"]
    card = checkpoint.card
    record = {
        "score": score,
        "epochs": result.epochs,
        "best_epoch": card.training.best_epoch if card is not None and card.training is not None else None,
        "train_seconds": seconds,
        "resumed": resume,
        "n_train_file": len(table),
        "n_scoring": len(scoring),
        "resolved": {"max_epochs": config.trainer.max_epochs, "patience": config.trainer.patience},
        "kept_heads": kept_head_drift(card),
    }
    resolved = read_config_file(run_dir / "config.yaml")
    record["config"] = {key: resolved.get(key) for key in ("data", "optimizer", "trainer", "finetune", "start_from")}
    shutil.rmtree(work, ignore_errors=True)
    return record


def row_text(task: MatbenchTask, fold: int, name: str, seed: int, record: dict[str, Any]) -> str:
    score = record["score"]
    if task.type is TaskType.REGRESSION:
        value = f"MAE {score['mae']:.4f}"
    else:
        value = f"AUC {score['roc_auc']:.4f} LB {score['leaderboard_roc_auc']:.4f}"
    kept = record.get("kept_heads") or {}
    drift = (f"kept MAE x{kept['mae_ratio_median']:.2f} med / x{kept['mae_ratio_worst']:.2f} worst "
             f"({kept['mae_ratio_worst_head']}), AUC drop {kept['roc_auc_drop_worst']:+.3f}"
             if kept.get("mae_ratio_median") is not None else "-")  # fmt: skip
    epochs = f"{record['epochs']} ep (best {record['best_epoch']})"
    seconds = f"{record['train_seconds']:>7.0f} s"
    return f"{name:<14} {task.name:<9} {fold:>2} {seed:>4}  {value:<26} {epochs:<18} {seconds}  {drift}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, default=None, help="the crabnet 2.0.8 wheel (default: the corpus cache)")
    parser.add_argument("--start", type=Path, required=True, help="the start checkpoint folder (a foundation)")
    parser.add_argument("--corpus", type=Path, required=True, help="the replay corpus folder")
    parser.add_argument("--tasks", default="expt_gap,glass")
    parser.add_argument("--folds", default="0")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--report-only", action="store_true", help="print the table of finished units, run nothing")
    args = parser.parse_args()
    try:
        tasks = [TASKS[n] for n in parse_names(args.tasks, list(TASKS), "--tasks")]
        folds = parse_ints(args.folds, "--folds", high=4)
        seeds = parse_ints(args.seeds, "--seeds")
        variants = parse_names(args.variants, list(VARIANTS), "--variants")
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    from fm_engine.checkpoints import load_checkpoint

    start = args.start.resolve()
    start_id = load_checkpoint(start).checkpoint_id
    wheel = Path(args.wheel) if args.wheel else default_wheel_path()
    configure_threads()
    env = environment()
    print_environment(env)
    datasets = read_datasets(wheel, tasks)
    sha = file_sha256(wheel)
    rows = []
    print(f"{'variant':<14} {'task':<9} {'fold':>2} {'seed':>4}  {'validation score':<26} {'epochs':<18} "
          f"{'wall':>9}  kept heads (test metric after / before)")  # fmt: skip
    for fold in folds:
        for task in tasks:
            for name in variants:
                for seed in seeds:
                    settings = {"variant": variant_settings(name), "start_id": start_id if VARIANTS[name].get(
                        "start") else "", "wheel": sha, "inner": [INNER_SEED, INNER_VAL_SHARE]}  # fmt: skip
                    if VARIANTS[name].get("defaults"):  # the default path: the defaults of the code measured
                        config = variant_config(task, name, Path("/data.csv"), seed=seed, start=start,
                                                corpus=args.corpus.resolve())  # fmt: skip
                        settings["config"] = {k: v for k, v in config.to_dict().items() if k != "base_dir"}
                    path = unit_path(task.name, fold, name, seed, settings)
                    record = json.loads(path.read_text()) if path.exists() else None
                    if record is None:
                        if args.report_only:
                            continue
                        record = run_unit(task, datasets[task.name], fold, name, seed, start=start,
                                          corpus=args.corpus.resolve(), path=path)  # fmt: skip
                        record = {"task": task.name, "fold": fold, "variant": name, "seed": seed,
                                  "settings": settings, **record}  # fmt: skip
                        path.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write_json(path, record)
                    print(row_text(task, fold, name, seed, record), flush=True)
                    rows.append({k: v for k, v in record.items() if k != "settings"})
    result = {"environment": env, "start": str(start), "start_id": start_id, "corpus": str(args.corpus),
              "inner_seed": INNER_SEED, "inner_val_share": INNER_VAL_SHARE, "rows": rows}  # fmt: skip
    print(f"wrote {write_result(f'finetune_recipe_{start.parent.name}', result)}")


if __name__ == "__main__":
    main()
