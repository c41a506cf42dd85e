"""Benchmark: a few hundred rows of a user's own data, our default ``fm train`` vs a forest on composition statistics.

What it measures
    * Bulk modulus (bundled AFLOW task, GPa): random subsets of 100, 300 and 1,000 rows (``--subsets`` per size,
      seeds 0, 1, ...) drawn from the rows the bundled file does not label ``test``; every model is scored on the
      same fixed test rows (the file's ``test`` rows, 490 compositions).
    * HEA yield strength vs temperature (bundled curves, MPa): ``--subsets`` random 80/20 splits by alloy
      (whole curves); scored on every curve point of the held-out alloys.
    Ours: the default ``fm train`` path on the subset written as a CSV (the bundled task's settings, every
    training setting left at its default, so the recipe follows the data size), except ``data.test_ratio: 0``:
    like the forest it trains on all the rows it is given (its validation share is taken from them).
    ``--start-from X`` passes ``start_from: X`` into the config (the fine-tuning key, when this fm_engine has it);
    ``--set KEY=VALUE`` (repeatable) sets any other config key (dotted, e.g. ``finetune.encoder_lr_scale=0.3``; the
    value read as YAML), to compare candidate settings.
    ``--validation``: choose settings without looking at the test rows: the test rows are never read; every model
    is scored on an inner held-out part of the training data instead (bulk modulus: 490 rows drawn once from the
    non-test rows, the subsets drawn from the rest; curves: 20 % of each split's training alloys, trained on the
    other 80 %).
    ``--cases bulk`` / ``--cases curves`` runs one case only (default both).
    Forest: scikit-learn ``RandomForestRegressor`` (300 trees) on the ``stats`` descriptor (fraction-weighted mean,
    variance, max and min of the 58 element properties, 232 dims; curves: plus the temperature), ``max_features``
    chosen among sqrt / 0.33 / 1.0 by the out-of-bag R² on the subset itself (inside the training data only).
    Same subsets, same test rows, same run. MAE in physical units; the difference ours - forest with a 95 %
    paired bootstrap interval (the test compositions resampled, the same draw for both models and every subset;
    curves resampled whole, stratified by split).

Goal
    Better than the forest; at least as good on the 300-row subsets.

Run
    ``nice -n 10 .venv/bin/python bench/small_data.py`` (about 10 minutes on 2 busy cores)
    ``--tag before`` with ``PYTHONPATH`` at an older checkout measures that code with the same script.
Writes bench/results/small_data[_<tag>].json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import environment, print_environment, write_result
from sklearn.ensemble import RandomForestRegressor

from fm_engine.checkpoints import load_checkpoint
from fm_engine.columns import with_unit
from fm_engine.compositions import parse_many
from fm_engine.datasets import bundled_task
from fm_engine.descriptors import Descriptor, DescriptorSpec
from fm_engine.models import flatten_curves
from fm_engine.training import TrainConfig, train

SIZES = (100, 300, 1000)
N_TREES = 300
MAX_FEATURES = ("sqrt", 0.33, 1.0)
N_RESAMPLES = 1000
CURVE_TEST_SHARE = 0.2


@dataclass
class Trial:
    """One subset: test MAE of both models and the per-test-composition absolute errors (for the bootstrap)."""

    label: str
    n_train: int
    ours_mae: float
    forest_mae: float
    ours_errors: np.ndarray  # per test point
    forest_errors: np.ndarray
    groups: np.ndarray  # test composition of each point
    epochs: int
    ours_seconds: float
    forest_seconds: float
    forest_max_features: Any
    settings: dict[str, Any] = field(default_factory=dict)


def stats_features(formulas: list[str]) -> np.ndarray:
    batch = parse_many(formulas)
    if batch.n_bad:
        raise ValueError(f"unparseable formula in the benchmark data: {batch.bad.iloc[0].to_dict()}")
    return Descriptor(DescriptorSpec(kind="stats")).transform(batch.weights)


def fit_forest(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[RandomForestRegressor, Any]:
    """The forest whose ``max_features`` has the best out-of-bag R² on the training rows."""
    best, best_score, best_choice = None, -np.inf, None
    for choice in MAX_FEATURES:
        forest = RandomForestRegressor(
            n_estimators=N_TREES, max_features=choice, oob_score=True, n_jobs=2, random_state=seed
        ).fit(x, y)
        if forest.oob_score_ > best_score:
            best, best_score, best_choice = forest, forest.oob_score_, choice
    return best, best_choice  # type: ignore[return-value]


def set_key(config: dict[str, Any], dotted: str, value: Any) -> None:
    """``config[a][b] = value`` for ``dotted`` = ``a.b`` (sections made as needed)."""
    *sections, key = dotted.split(".")
    for section in sections:
        config = config.setdefault(section, {})
    config[key] = value


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as {dotted key: value read as YAML}."""
    import yaml

    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set: expected KEY=VALUE (e.g. finetune.encoder_lr_scale=0.3), got {item!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


OVERRIDES: dict[str, Any] = {}  # --set KEY=VALUE, applied to every config of this run


def train_ours(spec: dict[str, Any], frame: pd.DataFrame, work: Path, start_from: str | None) -> tuple[Any, Any]:
    """Train the default ``fm train`` config on ``frame`` (written as CSV); returns (loaded checkpoint, result)."""
    path = work / "data.csv"
    frame.to_csv(path, index=False)
    task = {key: value for key, value in spec.items() if value is not None and key != "split_column"}
    task["data_files"] = [str(path)]
    config: dict[str, Any] = {"name": "small-data", "tasks": [task], "data": {"test_ratio": 0.0},
                              "trainer": {"progress_bar": False}}  # fmt: skip
    if start_from is not None:
        if "start_from" not in TrainConfig.__dataclass_fields__:
            raise SystemExit("--start-from: this fm_engine's TrainConfig has no start_from key yet")
        config["start_from"] = start_from
    for key, value in OVERRIDES.items():
        set_key(config, key, value)
    result = train(TrainConfig.from_dict(config), work / "run", progress_bar=False)
    return load_checkpoint(result.checkpoint), result


def kept_heads_drift(loaded: Any) -> dict[str, Any]:
    """A fine-tune's kept regression heads: median and worst ratio of test MAE after / before (on the same replayed
    test compositions); {} for a run from scratch."""
    card = loaded.card
    if card is None or card.start is None or not card.start.test_metrics_before:
        return {}
    ratios = []
    for name, before in card.start.test_metrics_before.items():
        task = card.task(name)
        after = (task.test_metrics if task is not None else None) or {}
        if "mae" in before and "mae" in after and before["mae"]:
            ratios.append(after["mae"] / before["mae"])
    if not ratios:
        return {}
    return {"kept_mae_ratio_median": round(float(np.median(ratios)), 3), "kept_mae_ratio_max": round(max(ratios), 3)}


def recorded_settings(run_dir: Path, loaded: Any) -> dict[str, Any]:
    """The run's resolved schedule and its best epoch (from the card)."""
    import yaml

    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    training = loaded.card.training if loaded.card is not None else None
    return kept_heads_drift(loaded) | {
        "val_ratio": recorded["data"]["val_ratio"], "batch_size": recorded["data"]["batch_size"],
        "max_epochs": recorded["trainer"]["max_epochs"], "patience": recorded["trainer"]["patience"],
        "best_epoch": training.best_epoch if training is not None else None,
    }  # fmt: skip


def scalar_trial(size: int, seed: int, pool: pd.DataFrame, test: pd.DataFrame, start_from: str | None) -> Trial:
    task = bundled_task("bulk_modulus")
    spec = task.spec().to_dict()
    column = spec["data_column"]
    subset = pool.sample(n=size, random_state=seed)[["composition", column]]
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        loaded, result = train_ours(spec, subset, Path(work), start_from)
        predicted = with_unit(spec["name"], spec.get("unit"))  # the task's value column: <task> [<unit>]
        ours = loaded.predict(list(test["composition"]), distances=False)[predicted].to_numpy(dtype=float)
        ours_seconds = time.perf_counter() - start
        settings = recorded_settings(Path(work) / "run", loaded)
    start = time.perf_counter()
    forest, choice = fit_forest(stats_features(list(subset["composition"])), subset[column].to_numpy(), seed)
    theirs = forest.predict(stats_features(list(test["composition"])))
    forest_seconds = time.perf_counter() - start
    truth = test[column].to_numpy(dtype=float)
    ours_err, forest_err = np.abs(ours - truth), np.abs(theirs - truth)
    print(f"  bulk n={size} subset {seed}: ours {ours_err.mean():.2f} forest {forest_err.mean():.2f} GPa; "
          f"{result.epochs} epochs, {ours_seconds:.0f} s; {settings}", flush=True)  # fmt: skip
    return Trial(f"bulk_modulus n={size} subset {seed}", size, float(ours_err.mean()), float(forest_err.mean()),
                 ours_err, forest_err, np.arange(len(truth)), result.epochs, ours_seconds, forest_seconds, choice,
                 settings)  # fmt: skip


def curve_predictions(loaded: Any, frame: pd.DataFrame, task_name: str) -> np.ndarray:
    """The model's prediction (physical units) at every (composition, temperature) row of ``frame``."""
    model = loaded.model
    alloys = list(dict.fromkeys(frame["composition"]))
    weights = parse_many(alloys).weights
    x = torch.as_tensor(Descriptor(model.config.descriptor).transform(weights), dtype=torch.float32)
    t = [torch.as_tensor(frame.loc[frame["composition"] == a, "temperature"].to_numpy(), dtype=torch.float32)
         for a in alloys]  # fmt: skip
    flat_t, index, _ = flatten_curves(t)
    with torch.no_grad():
        out = model.heads_forward(model.encode(x), {task_name: (flat_t, index)}, tasks=[task_name])[task_name]
        values = model.to_physical(task_name, out).numpy()
    order = np.concatenate([np.flatnonzero((frame["composition"] == a).to_numpy()) for a in alloys])
    result = np.empty(len(frame))
    result[order] = values
    return result


def split_alloys(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows) of curve rows: ``CURVE_TEST_SHARE`` of the alloys held out, whole."""
    alloys = np.array(sorted(set(frame["composition"])))
    rng = np.random.default_rng(seed)
    test_alloys = set(rng.choice(alloys, size=round(CURVE_TEST_SHARE * len(alloys)), replace=False))
    is_test = frame["composition"].isin(test_alloys).to_numpy()
    return frame[~is_test], frame[is_test].reset_index(drop=True)


VALIDATION_SEED = 1000  # seeds the inner held-out split of --validation (never the test split's seed)


def curve_trial(seed: int, frame: pd.DataFrame, start_from: str | None, *, validation: bool = False) -> Trial:
    task = bundled_task("yield_strength")
    spec = task.spec().to_dict()
    train_rows, test_rows = split_alloys(frame, seed)
    if validation:  # the test alloys are never used: an inner split of the training alloys scores the models
        train_rows, test_rows = split_alloys(train_rows, VALIDATION_SEED + seed)
    alloys = np.array(sorted(set(train_rows["composition"])))
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        loaded, result = train_ours(spec, train_rows[["composition", "temperature", "yield_strength"]], Path(work),
                                    start_from)  # fmt: skip
        ours = curve_predictions(loaded, test_rows, spec["name"])
        ours_seconds = time.perf_counter() - start
        settings = recorded_settings(Path(work) / "run", loaded)
    start = time.perf_counter()

    def features(rows: pd.DataFrame) -> np.ndarray:
        return np.column_stack([stats_features(list(rows["composition"])), rows["temperature"].to_numpy()])

    forest, choice = fit_forest(features(train_rows), train_rows["yield_strength"].to_numpy(), seed)
    theirs = forest.predict(features(test_rows))
    forest_seconds = time.perf_counter() - start
    truth = test_rows["yield_strength"].to_numpy(dtype=float)
    ours_err, forest_err = np.abs(ours - truth), np.abs(theirs - truth)
    groups = pd.factorize(test_rows["composition"])[0]
    n_train_alloys = len(alloys)
    print(f"  curves split {seed}: ours {ours_err.mean():.1f} forest {forest_err.mean():.1f} MPa; "
          f"{result.epochs} epochs, {ours_seconds:.0f} s; {settings}", flush=True)  # fmt: skip
    return Trial(f"yield_strength split {seed} ({n_train_alloys} training alloys)", n_train_alloys,
                 float(ours_err.mean()), float(forest_err.mean()), ours_err, forest_err, groups, result.epochs,
                 ours_seconds, forest_seconds, choice, settings)  # fmt: skip


def paired_interval(trials: list[Trial], *, seed: int = 0) -> tuple[float, float]:
    """95 % interval of mean over trials of (ours MAE - forest MAE): each trial's test compositions resampled
    whole, stratified by trial (trials on the same test rows share the draw)."""
    rng = np.random.default_rng(seed)
    diffs = np.empty(N_RESAMPLES)
    shared = len({len(t.groups) for t in trials}) == 1 and all(np.array_equal(t.groups, trials[0].groups)
                                                               for t in trials)  # fmt: skip
    members = [[np.flatnonzero(t.groups == g) for g in np.unique(t.groups)] for t in trials]
    for r in range(N_RESAMPLES):
        values = []
        draw = None
        for trial, groups in zip(trials, members, strict=True):
            if draw is None or not shared:
                draw = rng.integers(0, len(groups), len(groups))
            index = np.concatenate([groups[g] for g in draw])
            values.append(trial.ours_errors[index].mean() - trial.forest_errors[index].mean())
        diffs[r] = np.mean(values)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return float(low), float(high)


def summarise(name: str, unit: str, trials: list[Trial]) -> dict[str, Any]:
    ours = float(np.mean([t.ours_mae for t in trials]))
    forest = float(np.mean([t.forest_mae for t in trials]))
    low, high = paired_interval(trials)
    row = {"case": name, "unit": unit, "subsets": len(trials), "ours_mae": ours, "forest_mae": forest,
           "difference": ours - forest, "ci95": [low, high],
           "ours_wins": sum(t.ours_mae < t.forest_mae for t in trials),
           "trials": [{"label": t.label, "n_train": t.n_train, "ours_mae": t.ours_mae, "forest_mae": t.forest_mae,
                       "epochs": t.epochs, "ours_seconds": round(t.ours_seconds, 1),
                       "forest_seconds": round(t.forest_seconds, 1), "forest_max_features": t.forest_max_features,
                       "settings": t.settings} for t in trials]}  # fmt: skip
    print(f"| {name} | {unit} | {len(trials)} | {ours:.3g} | {forest:.3g} | {ours - forest:+.3g} "
          f"[{low:+.3g}, {high:+.3g}] | {row['ours_wins']}/{len(trials)} |", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subsets", type=int, default=3, help="random subsets (or splits) per size")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--start-from", default=None, help="passed as the config key start_from")
    parser.add_argument("--tag", default="", help="suffix of the result file, e.g. before")
    parser.add_argument("--no-curves", action="store_true", help="the same as --cases bulk")
    parser.add_argument("--cases", default="bulk,curves", help="bulk, curves or both (comma-separated)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config key for our runs (dotted, value as YAML), e.g. trainer.patience=50",
    )
    parser.add_argument("--validation", action="store_true",
                        help="score on an inner split of the training data, never the test rows (for choosing "
                             "settings)")  # fmt: skip
    args = parser.parse_args()
    cases = {case.strip() for case in args.cases.split(",") if case.strip()}
    if args.no_curves:
        cases.discard("curves")
    if not cases or cases - {"bulk", "curves"}:
        raise SystemExit(f"--cases: expected bulk, curves or both, got {args.cases!r}")
    OVERRIDES.update(parse_settings(args.set))
    env = environment()
    print_environment(env)
    mode = "validation (inner split of the training data)" if args.validation else "test"
    print(f"scored on: {mode}; settings: {OVERRIDES or 'defaults'}; start_from: {args.start_from or 'default'}")
    print("| case | unit | subsets | ours MAE | forest MAE | ours - forest, 95 % CI | ours better |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    if "bulk" in cases:
        bulk = bundled_task("bulk_modulus").frame()
        pool = bulk[bulk["split"] != "test"].reset_index(drop=True)
        if args.validation:  # the file's test rows are never read: 490 of the other rows score instead
            test = pool.sample(n=490, random_state=VALIDATION_SEED)
            pool = pool.drop(index=test.index).reset_index(drop=True)
            test = test.reset_index(drop=True)
        else:
            test = bulk[bulk["split"] == "test"].reset_index(drop=True)
        print(f"bulk modulus: {len(pool)} rows to draw from, {len(test)} fixed scoring rows")
        for size in (int(s) for s in args.sizes.split(",")):
            trials = [scalar_trial(size, seed, pool, test, args.start_from) for seed in range(args.subsets)]
            rows.append(summarise(f"bulk_modulus, {size} rows", "GPa", trials))
    if "curves" in cases:
        curves = bundled_task("yield_strength").frame()
        trials = [curve_trial(seed, curves, args.start_from, validation=args.validation)
                  for seed in range(args.subsets)]  # fmt: skip
        rows.append(summarise(f"yield_strength, {trials[0].n_train} alloys", "MPa", trials))
    name = "small_data" + (f"_{args.tag}" if args.tag else "")
    path = write_result(name, {"environment": env, "start_from": args.start_from, "validation": args.validation,
                               "settings": OVERRIDES, "rows": rows})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
