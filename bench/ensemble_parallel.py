"""Benchmark: an ensemble's members one after another (``ensemble.parallel: 1``) vs side by side (``parallel: 2``).

What it measures
    ``fm train``'s training call (``fm_engine.training.train``) of the same ensemble twice, from scratch, on one
    machine: the demo's bulk-modulus task (bundled, AFLOW; 3,917 training compositions) with the demo encoder, N
    members of ``--epochs`` epochs (patience as large, so every member runs every epoch). Wall time of each, and
    the largest difference between the two ensembles' weights (0: side by side trains bit for bit as alone).

Run: ``.venv/bin/python bench/ensemble_parallel.py [--members 2] [--epochs 30]`` on an otherwise quiet machine (the
figure is the ratio). Writes bench/results/ensemble_parallel.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import environment, print_environment, write_result
from safetensors.numpy import load_file

from fm_engine.training import TrainConfig, train
from fm_engine.training.ensemble import member_folder


def ensemble_config(*, members: int, epochs: int, parallel: int) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "name": f"bulk-x{members}-parallel{parallel}",
            "seed": 42,
            "start_from": "scratch",
            "tasks": [{"bundled": "bulk_modulus"}],
            "trainer": {"max_epochs": epochs, "patience": epochs},
            "ensemble": {"members": members, "parallel": parallel},
        }
    )


def largest_difference(first: Path, second: Path, members: int) -> float:
    """The largest absolute difference between the two runs' member weights."""
    worst = 0.0
    for k in range(members):
        a, b = (load_file(member_folder(run, k) / "checkpoint" / "model.safetensors") for run in (first, second))
        worst = max([worst, *(float(np.max(np.abs(a[n] - b[n]), initial=0.0)) for n in a)])
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    env = environment()
    print_environment(env)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        runs = {}
        for parallel in (1, 2):
            runs[parallel] = Path(scratch) / f"parallel_{parallel}"
            config = ensemble_config(members=args.members, epochs=args.epochs, parallel=parallel)
            started = time.perf_counter()
            if train(config, runs[parallel], progress_bar=False).state != "done":
                raise SystemExit(f"parallel {parallel}: the run did not finish")
            seconds[str(parallel)] = time.perf_counter() - started
            print(f"parallel {parallel}: {seconds[str(parallel)]:.1f} s for {args.members} members")
        difference = largest_difference(runs[1], runs[2], args.members)
    speedup = seconds["1"] / seconds["2"]
    print(f"side by side is {speedup:.2f}x as fast; largest weight difference {difference:g}")
    path = write_result("ensemble_parallel", {"environment": env, "settings": vars(args), "seconds": seconds,
                                              "speedup": speedup, "largest_weight_difference": difference})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
