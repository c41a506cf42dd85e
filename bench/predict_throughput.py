"""Benchmark: ``fm predict`` end to end on 10k / 100k / 1M compositions: rows/s and peak RSS.

What it measures
    For each size a CSV of synthetic compositions is written (half real formulas drawn from the bundled
    datasets, half random alloys of 2-6 elements from the design alloy palette, amounts with 2 decimals,
    plus a ``sample`` id column), then ``fm predict --no-progress`` runs on it as a subprocess exactly as
    a user starts it, with the distance-to-training columns. Rows/s = rows / wall time of that process
    (start-up, checkpoint load, reading, parsing, predicting, nearest-neighbour search and writing the
    output CSV included). Peak RSS is the kernel's figure for that child (``os.wait4`` rusage
    ``ru_maxrss``, as ``resource.getrusage(RUSAGE_CHILDREN)``).

Goal
    >= 20,000 rows/s end to end on 2 cores, peak RSS < 1.5 GB whatever the file size
    (before streaming: 1M rows took 355 s of CPU, about 2,800 rows/s, and 2.5 GB).

Run
    ``.venv/bin/python bench/predict_throughput.py`` (trains a 1-epoch demo checkpoint first if
    ``--checkpoint`` is not given; about 2-3 minutes in all on a quiet 2-core machine)
    ``.venv/bin/python bench/predict_throughput.py --sizes 10000,100000 --checkpoint RUN``
Writes bench/results/predict_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import OtherLoad, environment, print_environment, write_result
from train_memory import MIB, fm_command, run_child

from fm_engine.datasets import bundled_tasks
from fm_engine.inverse.constraints import ALLOY_PALETTE

GOAL_ROWS_PER_S = 20_000
GOAL_RSS_MIB = 1.5e9 / MIB


def synthetic_compositions(n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` rows: half real formulas from the bundled data (repeats allowed), half random 2-6 element
    alloys of the alloy palette with 2-decimal amounts (mostly unique)."""
    rng = np.random.default_rng(seed)
    real = pd.unique(pd.concat([task.frame()["composition"].astype(str) for task in bundled_tasks().values()]))
    n_real = n // 2
    formulas = list(rng.choice(real, size=n_real))
    palette = np.asarray(ALLOY_PALETTE)
    sizes = rng.integers(2, 7, size=n - n_real)
    for size in sizes:
        symbols = rng.choice(palette, size=size, replace=False)
        amounts = rng.integers(1, 100, size=size) / 100
        formulas.append("".join(f"{s}{a:g}" for s, a in zip(symbols, amounts, strict=True)))
    order = rng.permutation(n)
    return pd.DataFrame({"sample": [f"s{i}" for i in range(n)], "composition": np.asarray(formulas)[order]})


def write_input(n: int, path: Path, *, seed: int = 0, target: bool = False) -> None:
    """Write the synthetic CSV in a child process. (A child started by this process reports at least this
    process's peak RSS as its own: Linux carries the high-water mark across fork + exec. Building a
    1M-row table here would inflate every later measurement.)"""
    command = [sys.executable, __file__, "--write-input", str(n), str(path), "--seed", str(seed)]
    subprocess.run(command + (["--target"] if target else []), check=True)


def demo_checkpoint(folder: Path) -> Path:
    """A 1-epoch demo run (the full demo's tasks, data and architecture; fewer epochs)."""
    run = folder / "demo"
    env = {**os.environ, "FM_DEMO_MAX_EPOCHS": "1"}
    print("training a 1-epoch demo checkpoint ...", flush=True)
    subprocess.run([*fm_command(), "demo", "--out", str(run), "--no-progress"], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint or run directory (default: train a 1-epoch demo)")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated row counts")
    parser.add_argument("--chunk-size", type=int, help="passed to fm predict --chunk-size")
    parser.add_argument("--write-input", nargs=2, metavar=("ROWS", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--target", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_input:  # the child of write_input
        frame = synthetic_compositions(int(args.write_input[0]), seed=args.seed)
        if args.target:  # a random regression target (bench/train_memory.py --rows)
            frame["target"] = np.random.default_rng(args.seed).random(len(frame)) * 100
        frame.to_csv(args.write_input[1], index=False)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    env = environment()
    print_environment(env)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fm-bench-predict-") as tmp:
        folder = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else demo_checkpoint(folder)
        for n in sizes:
            source = folder / f"in-{n}.csv"
            write_input(n, source)
            output = folder / f"out-{n}.csv"
            command = [*fm_command(), "predict", "--checkpoint", str(checkpoint), "--input", str(source),
                       "--output", str(output), "--no-progress"]  # fmt: skip
            if args.chunk_size:
                command += ["--chunk-size", str(args.chunk_size)]
            with OtherLoad() as load:
                child = run_child(command)
            if child["exit_code"] != 0:
                raise RuntimeError(f"fm predict failed (exit {child['exit_code']}): {child['output_tail']}")
            rows_per_s = n / child["wall_seconds"]
            run = {
                "rows": n,
                "wall_seconds": child["wall_seconds"],
                "rows_per_second": rows_per_s,
                "max_rss_mib": child["max_rss_bytes"] / MIB,
                "input_mib": source.stat().st_size / MIB,
                "output_mib": output.stat().st_size / MIB,
                "other_load": load.share,
            }
            runs.append(run)
            note = f"  (other processes used {load.share:.0%} of the CPU)" if load.share > 0.1 else ""
            print(f"{n:>9,} rows: {child['wall_seconds']:7.1f} s  {rows_per_s:9,.0f} rows/s  "
                  f"peak RSS {run['max_rss_mib']:7.1f} MiB{note}", flush=True)  # fmt: skip
            source.unlink()
            output.unlink()
    print(f"goal: >= {GOAL_ROWS_PER_S:,} rows/s end to end, peak RSS < {GOAL_RSS_MIB:.0f} MiB (1.5 GB)")
    if any(run["other_load"] > 0.1 for run in runs):
        print("note: the machine was shared with other processes; re-run on a quiet machine for the record")
    result = {"environment": env, "checkpoint": str(args.checkpoint or "1-epoch demo"), "runs": runs,
              "goal_rows_per_second": GOAL_ROWS_PER_S, "goal_max_rss_mib": GOAL_RSS_MIB}  # fmt: skip
    print(f"wrote {write_result('predict_throughput', result)}")


if __name__ == "__main__":
    sys.exit(main())
