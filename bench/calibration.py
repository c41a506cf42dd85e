"""Benchmark: is an ensemble's ``mean +/- std`` an honest error bar, before and after calibration?

What it measures
    Per regression / curve task, on the TEST split of an ensemble (``fm train --ensemble N``): the share of truths
    inside ``mean +/- 1 std`` and ``mean +/- 2 std`` with the members' raw standard deviation (before) and with the
    calibrated one (after: ``sqrt((a * std)^2 + b^2)``, a and b fitted on the validation split only, see
    :mod:`fm_engine.calibration`), and the Spearman rank correlation between ``|truth - mean|`` and ``std``. The
    figures are recomputed here from ``checkpoint.predict`` on the test compositions (scalar tasks) against the
    truths in the data files, and set beside the ones the training run wrote into the model card (every task,
    curves pooled over their points); the ensemble mean's test MAE beside the average member's.

    Cases (``--cases``, default both):
    * ``demo``: the bundled demo tasks (``fm demo``'s config) as an ensemble of ``--members`` members, with a short
      schedule (``--epochs``, a smaller encoder ``--hidden``) so it finishes in about 10 minutes on one core;
    * ``expt_gap``: a user's own ``formula,target`` CSV, ``samples/expt_gap.csv`` (experimental band gaps, eV)
      with ``samples/train_own_csv.yaml``'s settings.
    ``--start-from`` (default ``scratch``: fine-tuning members from the foundation costs much more CPU time);
    ``--checkpoint PATH`` reports on an existing ensemble checkpoint or run instead of training (one case).
    Beside the product's calibration, two others fitted on the same validation split and scored on the same test
    split (bench only, see :func:`alternatives`): one factor by maximum likelihood (``b = 0``: the product's
    calibration before the floor existed) and one factor matched to the coverage at 11 levels.

Goal
    After calibration 68 % and 95 % of the test truths inside +/- 1 and 2 std, each within 5 points; a positive
    rank correlation (a larger spread points at a larger error).

Run
    ``FM_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/calibration.py`` (about 10 minutes on one busy core)
Writes bench/results/calibration[_<tag>].json.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import environment, print_environment, write_result

from fm_engine.calibration import (
    EXPECTED_LEVELS,
    SpreadScale,
    coverage,
    error_spread_correlation,
    fit_std_factor,
    observed_coverage,
)
from fm_engine.checkpoints import LoadedCheckpoint, load_checkpoint
from fm_engine.columns import std_column, with_unit
from fm_engine.compositions import canonical_key
from fm_engine.config import read_config_file
from fm_engine.tasks import TaskType
from fm_engine.training import TrainConfig, demo_config, train

ROOT = Path(__file__).resolve().parents[1]
USER_CONFIG = ROOT / "samples" / "train_own_csv.yaml"
GOALS = {1: 0.68, 2: 0.95}
TOLERANCE = 0.05


def case_config(case: str, *, members: int, epochs: int, hidden: list[int], start_from: str) -> TrainConfig:
    """The training config of a case, as an ensemble of ``members``."""
    if case == "demo":
        config = demo_config()
        config.trainer.max_epochs = epochs
        config.trainer.patience = max(10, epochs // 3)
        config.model.encoder.hidden_dims = list(hidden)
    elif case == "expt_gap":
        config = TrainConfig.from_record(read_config_file(USER_CONFIG), anchor=USER_CONFIG.parent)
    else:
        raise ValueError(f"--cases: unknown case '{case}' (expected demo or expt_gap)")
    config.start_from = start_from
    config.ensemble.members = members
    config.trainer.progress_bar = False
    return config


def truths(checkpoint: LoadedCheckpoint, task: str) -> pd.Series | None:
    """Canonical composition -> label of a scalar regression task, read from the CSV files its spec names (a bundled
    task's spec names its bundled file); None when they are not CSV files."""
    spec = checkpoint.model.tasks[task]
    files = [Path(f) for f in spec.data_files or []]
    if not files or not all(f.suffix == ".csv" and f.is_file() for f in files):
        return None
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    composition, column = spec.composition_column or "composition", spec.data_column or "target"
    frame = frame[[composition, column]].dropna()
    frame["key"] = [canonical_key(str(f)) for f in frame[composition]]
    return frame.groupby("key")[column].mean()


def recomputed(checkpoint: LoadedCheckpoint, task: str) -> dict[str, float] | None:
    """A scalar task's test figures from ``checkpoint.predict`` on its test compositions (None for other tasks)."""
    if checkpoint.model.tasks[task].type is not TaskType.REGRESSION or checkpoint.config.scalers[task].output_dim > 1:
        return None
    labels = truths(checkpoint, task)
    table = checkpoint.compositions()
    test = table[(table["split"] == "test") & table["tasks"].str.split(";").apply(lambda t: task in t)]
    keys = [k for k in test["composition"] if labels is not None and k in labels.index]
    if not keys:
        return None
    predicted = checkpoint.predict(keys, distances=False)
    column = with_unit(task, checkpoint.model.tasks[task].unit)  # bulk_modulus [GPa]
    y, mean, std = labels.loc[keys].to_numpy(), predicted[column].to_numpy(), predicted[std_column(column)].to_numpy()
    scale = checkpoint.spread_scales.get(task, SpreadScale())
    raw = np.sqrt(np.maximum(std**2 - scale.b**2, 0)) / scale.a if scale.a > 0 else np.full_like(std, np.nan)
    return {"n": len(keys), "spearman": error_spread_correlation(y, mean, std),
            **{f"coverage_{k}_before": coverage(y, mean, raw, k) for k in (1, 2)},
            **{f"coverage_{k}_after": coverage(y, mean, std, k) for k in (1, 2)}}  # fmt: skip


def alternatives(run: Path) -> dict[str, dict[str, Any]]:
    """Other calibrations, fitted on the same validation split of a run folder and scored on its test split, to set
    beside the product's two-parameter spread ``sqrt((a * std)^2 + b^2)`` (maximum likelihood; its a and b read from
    the checkpoint): ``one factor``, ``b = 0`` by maximum likelihood (the product before the floor existed), and
    ``coverage-matched``, the one factor whose validation coverage is closest to the expected share over
    :data:`EXPECTED_LEVELS` (least squares). Not in the product."""

    from fm_engine.training.ensemble import member_folder
    from fm_engine.training.evaluate import ensemble_outputs
    from fm_engine.training.trainer import read_model_config, recorded_datamodule

    checkpoint = load_checkpoint(run)
    lead = member_folder(run, 0)
    record = TrainConfig.from_record(read_config_file(lead / "config.yaml"), anchor=lead)
    dm, _, _ = recorded_datamodule(record, lead, read_model_config(lead / "model_config.json"))
    stages = {stage: ensemble_outputs(checkpoint.models, dm, stage) for stage in ("val", "test")}
    out: dict[str, dict[str, Any]] = {}
    for task in checkpoint.std_factors:
        (y, mean, std), (ty, tmean, tstd) = (
            (collected[0].targets[task].numpy().reshape(-1).astype(float), means[task].reshape(-1),
             spreads[task].reshape(-1)) for collected, means, spreads in stages.values()
        )  # fmt: skip
        grid = np.geomspace(0.05, 5000.0, 1500)
        misfit = [sum((c - level) ** 2 for c, level in zip(observed_coverage(y, mean, g * std), EXPECTED_LEVELS,
                                                             strict=True)) for g in grid]  # fmt: skip
        matched = float(grid[int(np.argmin(misfit))])
        pair = coverage_matched_pair(y, mean, std)
        one = fit_std_factor(y, mean, std)[0]
        scale = checkpoint.spread_scales[task]
        scaled = {"two-parameter (product)": scale.apply(tstd), "one factor (before the floor)": one * tstd,
                  "coverage-matched": matched * tstd, "coverage-matched a, b": pair.apply(tstd)}  # fmt: skip
        out[task] = {
            "coverage_matched_factor": matched,
            "coverage_matched_pair": {"a": pair.a, "b": pair.b},
            "one_factor": one,
            "two_parameter": {"a": scale.a, "b": scale.b},
            "test": {
                name: {"coverage_1": coverage(ty, tmean, spread, 1), "coverage_2": coverage(ty, tmean, spread, 2)}
                for name, spread in scaled.items()
            },  # fmt: skip
        }
    return out


def coverage_matched_pair(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> SpreadScale:
    """The (a, b) on a grid whose validation coverage at mean +/- 1 and 2 std is closest (least squares) to a normal
    error's 68.3 % and 95.4 %. Bench only."""
    rms = float(np.sqrt(np.nanmean((y - mean) ** 2)))
    best, found = np.inf, SpreadScale()
    for a in np.concatenate([[0.0], np.geomspace(0.05, 5000.0, 120)]):
        for b in np.concatenate([[0.0], rms * np.geomspace(0.005, 3.0, 80)]):
            if a == 0 and b == 0:
                continue
            spread = np.hypot(a * std, b)
            misfit = (coverage(y, mean, spread, 1) - 0.6827) ** 2 + (coverage(y, mean, spread, 2) - 0.9545) ** 2
            if misfit < best:
                best, found = misfit, SpreadScale(a=float(a), b=float(b))
    return found


def print_alternatives(result: dict[str, dict[str, Any]]) -> None:
    print("  other calibrations (fitted on validation, test coverage at 1 / 2 std):")
    for task, entry in result.items():
        shown = "; ".join(f"{name} {100 * c['coverage_1']:.1f}% / {100 * c['coverage_2']:.1f}%"
                          for name, c in entry["test"].items())  # fmt: skip
        two = entry["two_parameter"]
        print(
            f"  {task}: {shown} (two-parameter a {two['a']:.3g}, b {two['b']:.3g}; one factor "
            f"{entry['one_factor']:.3g}; coverage-matched factor {entry['coverage_matched_factor']:.3g})"
        )


def report(checkpoint: LoadedCheckpoint) -> dict[str, Any]:
    """Per task: the card's calibration record, the figures recomputed from predictions, the goal check."""
    card = checkpoint.card
    assert card is not None and card.ensemble is not None, "not an ensemble checkpoint with a card"
    tasks: dict[str, Any] = {}
    for name, record in card.ensemble.calibration.items():
        entry = card.task(name)
        metric = "mae" if "mae" in entry.test_metrics else "rmse"
        after = (record.coverage_1_after, record.coverage_2_after)
        tasks[name] = {
            "unit": entry.unit,
            "card": record.to_mapping(),
            "recomputed": recomputed(checkpoint, name),
            "within_goal": all(abs(a - GOALS[k]) <= TOLERANCE for k, a in zip((1, 2), after, strict=True)),
            "metric": metric,
            "ensemble": entry.test_metrics.get(metric),
            "average_member": card.ensemble.mean_member_test_metrics.get(name, {}).get(metric),
        }
    return {"members": card.ensemble.members, "checkpoint": str(checkpoint.path), "tasks": tasks}


def print_report(case: str, result: dict[str, Any]) -> None:
    print(f"\n{case}: {result['members']} members, {result.get('seconds', float('nan')):.0f} s training")
    print(f"{'task':26s} {'a':>8s} {'b':>8s} {'n test':>7s} {'1 std before':>12s} {'after':>7s} {'2 std before':>12s} "
          f"{'after':>7s} {'Spearman':>8s} {'goal':>5s}  ensemble / avg member")  # fmt: skip
    for name, task in result["tasks"].items():
        c = task["card"]

        def share(value: float | None) -> str:
            return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"

        spearman = "n/a" if c["spearman"] is None else f"{c['spearman']:.3f}"
        accuracy = f"{task['metric']} {task['ensemble']:.4g} / {task['average_member']:.4g} {task['unit']}"
        print(f"{name:26s} {c['factor']:8.3g} {c.get('floor') or 0:8.3g} {c['n_test']:7d} "
              f"{share(c['coverage_1_before']):>12s} "
              f"{share(c['coverage_1_after']):>7s} {share(c['coverage_2_before']):>12s} "
              f"{share(c['coverage_2_after']):>7s} {spearman:>8s} {'yes' if task['within_goal'] else 'no':>5s}  "
              f"{accuracy}")  # fmt: skip
        again = task["recomputed"]
        if again is not None:
            print(f"{'  (from fm predict)':26s} {'':8s} {'':8s} {again['n']:7d} "
                  f"{share(again['coverage_1_before']):>12s} "
                  f"{share(again['coverage_1_after']):>7s} {share(again['coverage_2_before']):>12s} "
                  f"{share(again['coverage_2_after']):>7s} {again['spearman']:8.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="demo,expt_gap")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60, help="demo case: max_epochs of each member")
    parser.add_argument("--hidden", default="256,128", help="demo case: the encoder's hidden_dims")
    parser.add_argument("--start-from", default="scratch")
    parser.add_argument("--checkpoint", type=Path, help="report on this ensemble checkpoint or run; no training")
    parser.add_argument("--runs", type=Path, help="keep the trained runs in this folder (default: a temporary one)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    env = environment()
    print_environment(env)
    results: dict[str, Any] = {"environment": env, "settings": vars(args) | {"checkpoint": str(args.checkpoint)}}
    if args.checkpoint is not None:
        results["cases"] = {"checkpoint": report(load_checkpoint(args.checkpoint))}
        print_report("checkpoint", results["cases"]["checkpoint"])
        if (args.checkpoint / "members").is_dir():  # a run folder: its validation split rebuilt from the records
            results["cases"]["checkpoint"]["alternatives"] = alternatives(args.checkpoint)
            print_alternatives(results["cases"]["checkpoint"]["alternatives"])
    else:
        hidden = [int(h) for h in args.hidden.split(",")]
        results["cases"] = {}
        with tempfile.TemporaryDirectory() as scratch:
            folder = args.runs or Path(scratch)
            for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
                config = case_config(case, members=args.members, epochs=args.epochs, hidden=hidden,
                                     start_from=args.start_from)  # fmt: skip
                started = time.perf_counter()
                outcome = train(config, folder / case)
                if outcome.state != "done":
                    raise SystemExit(f"{case}: training ended {outcome.state}")
                result = report(load_checkpoint(folder / case)) | {"seconds": time.perf_counter() - started}
                result["alternatives"] = alternatives(folder / case)
                result["config"] = {"max_epochs": config.trainer.max_epochs, "start_from": config.start_from,
                                    "hidden_dims": config.model.encoder.hidden_dims}  # fmt: skip
                results["cases"][case] = result
                print_report(case, result)
                print_alternatives(result["alternatives"])
    path = write_result("calibration" + (f"_{args.tag}" if args.tag else ""), results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
