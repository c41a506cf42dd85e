"""Benchmark: one task's error vs its training-data keep-ratio (``fm scaling``) on the bundled AFLOW data.

What it measures
    ``fm_engine.training.scaling.run_scaling`` (what ``fm scaling`` calls) retrains a small 2-task model
    once per keep-ratio; only ``--task``'s *training* labels are thinned (``task_masking_ratio``), the
    validation and test rows stay the same, and the ``--with`` tasks keep all their data. Per ratio it
    prints the thinned task's training compositions, test and validation error (MAE in the task's unit),
    the other tasks' test error alongside (not thinned: they move only through the shared encoder and
    the early stop, which watches the summed validation loss), and the run's epochs and wall time; then
    the fitted log-log slope of test error vs training compositions, and whether the test error rises
    monotonically as the ratio falls (and, separately, from the largest to the smallest ratio).

    Model (kept small so 5 runs fit in a few minutes on 2 cores): KMD descriptor, MLP encoder
    hidden_dims [256, 128] (batch norm), autoencoder on, batch 128, cosine schedule over ``--max-epochs``
    (60) with early stopping on the summed validation loss (``--patience`` 15), seed 42: the split is the
    same for every ratio. ``--seeds 42,43,44`` repeats the whole sweep per seed (each seed draws its own
    split, subsample and initialisation) and the table shows the mean, its standard deviation and each
    seed's value (about 3x the time).

Goal
    The thinned task's test error rises as its keep-ratio falls (a benchmark that prints figures, not a
    test: the exit code is 0 whatever the verdict).

Run
    ``.venv/bin/python bench/scaling_law.py`` (band gap thinned, bulk modulus alongside; ratios
    1,0.5,0.25,0.1,0.05; 5 runs of at most 60 epochs, 4-8 s each on 2 quiet cores; measured 192 s with
    other jobs using 45 % of the machine: bench/results/scaling_law.txt)
    ``.venv/bin/python bench/scaling_law.py --task bulk_modulus --with band_gap --ratios 1,0.3,0.1``
Keeps the runs in ``--out`` (default: a temporary directory, deleted); writes the printed report to
bench/results/scaling_law.txt (``--no-save``: don't).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from _common import RESULTS_DIR, OtherLoad, environment

from fm_engine.training import TrainConfig
from fm_engine.training.scaling import run_scaling

DEFAULT_RATIOS = "1,0.5,0.25,0.1,0.05"
DEFAULT_SEEDS = "42"


class Report:
    """Prints lines and keeps them, to store the report as bench/results/scaling_law.txt."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


def parse_ratios(value: str) -> list[float]:
    try:
        ratios = [float(r) for r in value.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ratios {value!r}: expected numbers like 1,0.5,0.2") from None
    if len(ratios) < 2 or any(not 0 < r <= 1 for r in ratios):
        raise argparse.ArgumentTypeError("--ratios: at least two keep-ratios in (0, 1]")
    return sorted(set(ratios), reverse=True)


def parse_seeds(value: str) -> list[int]:
    try:
        seeds = list(dict.fromkeys(int(s) for s in value.split(",") if s.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {value!r}: expected integers like 42,43,44") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: at least one seed")
    return seeds


def bench_config(task: str, others: list[str], args: argparse.Namespace) -> TrainConfig:
    return TrainConfig.from_dict({
        "name": f"scaling-{task}",
        "seed": args.seeds[0],
        "tasks": [{"bundled": name} for name in [task, *others]],
        "model": {"encoder": {"type": "mlp", "hidden_dims": [256, 128], "norm": "batch", "dropout": 0.0}},
        "data": {"batch_size": 128},
        "trainer": {"max_epochs": args.max_epochs, "patience": args.patience, "progress_bar": False},
    })  # fmt: skip


def run_info(out: Path, ratio: float) -> dict[str, Any]:
    card_path = out / f"ratio_{ratio:g}" / "checkpoint" / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else {}
    return card.get("training", {})


def loglog_slope(sizes: np.ndarray, errors: np.ndarray) -> float:
    """Exponent b of errors ~ sizes^b (least squares in log-log); negative: the error falls with more data."""
    if len(sizes) < 2 or not (errors > 0).all():
        return float("nan")
    return float(np.polyfit(np.log(sizes), np.log(errors), 1)[0])


def fmt(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="band_gap", help="the bundled task whose training data is thinned")
    parser.add_argument(
        "--with", dest="others", default="bulk_modulus",
        help="comma-separated bundled tasks trained alongside with all their data ('' for none)",
    )  # fmt: skip
    parser.add_argument("--ratios", type=parse_ratios, default=parse_ratios(DEFAULT_RATIOS),
                        help=f"keep-ratios (default {DEFAULT_RATIOS})")  # fmt: skip
    parser.add_argument("--out", help="keep the runs in this (new) directory (default: a temporary one)")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        default=parse_seeds(DEFAULT_SEEDS),
        help=f"repeat the whole sweep per seed (split, subsample, init); default {DEFAULT_SEEDS}",
    )
    parser.add_argument("--no-save", action="store_true", help="don't write bench/results/scaling_law.txt")
    args = parser.parse_args()
    others = [name.strip() for name in args.others.split(",") if name.strip() and name.strip() != args.task]
    config = bench_config(args.task, others, args)

    say = Report()
    say(f"$ .venv/bin/python bench/{Path(__file__).name} {shlex.join(sys.argv[1:])}".rstrip())
    env = environment()
    versions = env["versions"]
    say(f"torch {versions.get('torch')} | float32 matmul precision: {env['float32_matmul_precision']} | "
        f"torch threads: {env['torch_threads']}")  # fmt: skip
    say(f"CPU: {env['cpu']} ({env['cpu_count']} cores, {env['cpu_capability']}) | "
        f"load average {env['load_average_1min']:.2f}")  # fmt: skip
    encoder = config.model.encoder
    say(f"thinned: {args.task}; alongside (all data): {', '.join(others) or 'none'} | ratios "
        f"{','.join(f'{r:g}' for r in args.ratios)} | MLP {encoder.hidden_dims}, batch {config.data.batch_size}, "
        f"max {config.trainer.max_epochs} epochs, patience {config.trainer.patience}")  # fmt: skip

    start = time.perf_counter()
    tables, runs = [], {}
    with tempfile.TemporaryDirectory(prefix="fm-bench-scaling-") as tmp, OtherLoad() as load:
        root = Path(args.out) if args.out else Path(tmp) / "scaling"
        if root.exists() and any(root.iterdir()):
            raise SystemExit(f"--out {root}: not empty; choose a new directory")
        for seed in args.seeds:
            out = root / f"seed_{seed}"
            out.mkdir(parents=True, exist_ok=True)
            config.seed = seed
            (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
            print(f"seed {seed}: training {len(args.ratios)} runs into {out} ...", flush=True)
            seed_start = time.perf_counter()
            table = run_scaling(config, args.task, args.ratios, out, progress_bar=False)
            tables.append(table.assign(seed=seed))
            for ratio in args.ratios:
                runs[seed, ratio] = run_info(out, ratio)
            print(f"  done in {time.perf_counter() - seed_start:.0f} s", flush=True)
    wall = time.perf_counter() - start
    table = pd.concat(tables, ignore_index=True)

    def by_ratio(task: str, column: str) -> pd.DataFrame:
        """ratio (descending) x seed."""
        rows = table[table["task"] == task]
        return rows.pivot(index="ratio", columns="seed", values=column).sort_index(ascending=False)

    mine = table[table["task"] == args.task]
    unit, name = mine["unit"].iloc[0], mine["metric"].iloc[0].upper()
    test, val = by_ratio(args.task, "test_error"), by_ratio(args.task, "val_error")
    n_train = by_ratio(args.task, "n_train")
    ratios = list(test.index)
    others_test = {other: by_ratio(other, "test_error").mean(axis=1) for other in others}
    other_units = {other: table[table["task"] == other]["unit"].iloc[0] for other in others}
    n_seeds = len(args.seeds)
    multi = n_seeds > 1
    say()
    if multi:
        say(f"{args.task}: test/val {name} in {unit}, mean over seeds {', '.join(map(str, args.seeds))} (each: "
            f"its own split, subsample, init); other tasks: mean test {name} in their unit")  # fmt: skip
    else:
        say(f"{args.task}: test/val {name} in {unit}, seed {args.seeds[0]}; other tasks: test {name} in their unit")
    other_headers = "".join(f" {(o[:14] + ' (' + other_units[o] + ')'):>20}" for o in others)
    seed_width = 8 * n_seeds
    header = f"{'ratio':>6} {'n_train':>8} {'test ' + name:>9}" + (f" {'+-std':>7}" if multi else "")
    header += f" {'val ' + name:>8}{other_headers}" + (f"  {'test per seed':<{seed_width}}" if multi else "")
    header += f" {'epochs':>7} {'run s':>6}"
    say(header)
    say("-" * len(header))
    for ratio in ratios:
        line = f"{ratio:>6g} {int(round(n_train.loc[ratio].mean())):>8d} {fmt(test.loc[ratio].mean()):>9}"
        if multi:
            line += f" {float(test.loc[ratio].std(ddof=1)):>7.2g}"
        line += f" {fmt(val.loc[ratio].mean()):>8}" + "".join(f" {fmt(others_test[o].loc[ratio]):>20}" for o in others)
        if multi:
            line += f"  {' '.join(f'{fmt(v):>7}' for v in test.loc[ratio]):<{seed_width}}"
        infos = [runs[seed, ratio] for seed in args.seeds]
        best = np.mean([i.get("best_epoch", np.nan) for i in infos])
        ran = np.mean([i.get("epochs_run", np.nan) for i in infos])
        seconds = float(np.mean([float(i.get("wall_time_s") or np.nan) for i in infos]))
        say(f"{line} {f'{best:.0f}/{ran:.0f}':>7} {seconds:>6.1f}")
    say("(n_train: the thinned task's training compositions; epochs: best/run" + (" (mean)" if multi else "")
        + "; run s: wall time per run; the val and test sets do not depend on the ratio)")  # fmt: skip

    mean_test = test.mean(axis=1).to_numpy(dtype=float)
    mean_val = val.mean(axis=1).to_numpy(dtype=float)
    sizes = n_train.mean(axis=1).to_numpy(dtype=float)
    slope = loglog_slope(sizes, mean_test)
    seed_slopes = [loglog_slope(n_train[s].to_numpy(dtype=float), test[s].to_numpy(dtype=float)) for s in args.seeds]
    say()
    mean_word = "mean " if multi else ""
    per_seed_slopes = f"; per seed: {', '.join(f'{s:.3f}' for s in seed_slopes)}" if multi else ""
    say(f"log-log fit{' of the mean' if multi else ''}: test {name} ~ n_train^{slope:.3f} (validation: "
        f"^{loglog_slope(sizes, mean_val):.3f}{per_seed_slopes})")  # fmt: skip
    say(f"{mean_word}test {name} {fmt(mean_test[0])} -> {fmt(mean_test[-1])} {unit} "
        f"({mean_test[-1] / mean_test[0]:.2f}x) from ratio {ratios[0]:g} to {ratios[-1]:g}")  # fmt: skip
    for other in others:
        errors = others_test[other].to_numpy(dtype=float)
        spread = 100 * (errors.max() / errors.min() - 1)
        say(f"{other} (not thinned) {mean_word}test {name}: {fmt(errors.min())}-{fmt(errors.max())} "
            f"{other_units[other]} across the ratios (spread {spread:.1f} %)")  # fmt: skip
    rises = bool(np.all(np.diff(mean_test) > 0))
    end_to_end = bool(mean_test[-1] > mean_test[0])
    breaks = [f"{ratios[i]:g}->{ratios[i + 1]:g}" for i in range(len(ratios) - 1) if mean_test[i + 1] <= mean_test[i]]
    seeds_rising = sum(bool(np.all(np.diff(test[s].to_numpy(dtype=float)) > 0)) for s in args.seeds)
    say(f"{'PASS' if rises else 'FAIL'}: {mean_word}test error rises monotonically as the ratio falls"
        + ("" if rises else f" (not at {', '.join(breaks)})"))  # fmt: skip
    say(f"{'PASS' if end_to_end else 'FAIL'}: {mean_word}test error at ratio {ratios[-1]:g} > at ratio {ratios[0]:g}")
    val_rises = "yes" if np.all(np.diff(mean_val) > 0) else "no"
    if multi:
        say(
            f"(monotonic in {seeds_rising} of {n_seeds} seeds on its own; mean validation error monotonic: {val_rises})"
        )
    else:
        say(f"(validation error monotonic: {val_rises}; one seed: repeat with --seeds 42,43,44 for the spread)")
    say(f"wall time {wall:.0f} s for {n_seeds * len(ratios)} runs; other load on the machine meanwhile "
        f"{100 * load.share:.0f} %")  # fmt: skip
    if load.share > 0.1:
        say("note: other processes used the CPU meanwhile: run times are inflated (the errors are not affected)")
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / "scaling_law.txt"
        path.write_text("\n".join(say.lines) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    if args.out:
        seed_dir = Path(args.out) / f"seed_{args.seeds[0]}"
        print(f"runs, scaling.csv and scaling.html per seed in {args.out}/seed_*/ (rerun one: fm scaling --config "
              f"{seed_dir / 'config.yaml'} --task {args.task} --ratios {','.join(f'{r:g}' for r in args.ratios)} "
              "--out NEW_DIR)")  # fmt: skip


if __name__ == "__main__":
    main()
