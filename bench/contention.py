"""Benchmark: the demo's training epoch (and a design, and a prediction) alone vs beside a busy process.

What it measures
    Worker processes each hold one workload, built once: ``train`` = one epoch of optimizer steps of the
    demo model on the demo data (``demo_config()``: 7 tasks, MLP [512, 256] + autoencoder, batch 128,
    73 batches, built by the product's own ``build_datamodule`` / ``build_model``); ``design`` =
    ``run_design`` (16 random starts x 100 steps) on a small checkpoint; ``predict`` = ``predict_frame``
    of 20,000 compositions. For each policy the driver times, in interleaved rounds (so drifts of the
    machine's background load hit every figure alike):

    * alone: worker A runs, nothing else of ours does;
    * beside the same kind: workers A and B (same workload, same policy) run at the same moment;
    * beside a busy loop: A runs beside a pure-Python ``while True`` process.

    The figure is the median wall time per round; the slowdown is beside / alone (goal <= 2.5 on 2 cores:
    a competing process of the same kind takes at most half the CPU, so 2x is the proportional share).

Policies
    ``before``: ``FM_THREAD_POLICY=off`` (torch's defaults, the behaviour before the fix: one OpenMP thread
    per core, spinning waits). ``after``: the product's default (fm_engine.threads). Each worker calls
    ``configure_threads()`` where the product does (start of training / prediction / design).

Caveat
    On a machine shared with other work every figure is noisy: compare the ratios of one run, and
    repeat (``--rounds``). Pinning: ``--cpus 0,1`` runs every process of the benchmark on those CPUs.

Run: ``.venv/bin/python bench/contention.py [--kinds train,design,predict] [--rounds 5]``.
Writes bench/results/contention.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POLICIES: dict[str, dict[str, str]] = {
    "before": {"FM_THREAD_POLICY": "off"},  # torch defaults: a thread per core, spinning waits
    "after": {},  # the product default (fm_engine.threads)
    "passive-all-cores": {"FM_NUM_THREADS": str(len(os.sched_getaffinity(0)))},  # passive waits only
    "one-thread": {"FM_NUM_THREADS": "1"},
    "spin10k-2": {"FM_NUM_THREADS": "2", "OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "10000"},
    "spin100k-2": {"FM_NUM_THREADS": "2", "OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "100000"},
}
DESIGN = {
    "targets": [{"task": "bulk_modulus", "value": 250}],
    "seeds": {"source": "random", "n": 16},
    "steps": 100,
    "record_trajectory": False,
}


# ---------------------------------------------------------------- worker side (a separate process)
def _train_workload() -> Any:
    import torch

    from fm_engine.threads import configure_threads
    from fm_engine.training import demo_config
    from fm_engine.training.lightning import MultiTaskModule
    from fm_engine.training.trainer import build_datamodule, build_model

    policy = configure_threads()
    config = demo_config()
    torch.manual_seed(0)
    dm = build_datamodule(config)
    model = build_model(config, dm)
    module = MultiTaskModule(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    batches = list(dm.train_dataloader())

    def epoch() -> None:
        if policy is not None:
            policy.update()  # what training does at every epoch start
        model.train()
        for index, batch in enumerate(batches):
            loss = module.training_step(batch, index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return epoch


def _design_workload(checkpoint: str) -> Any:
    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.inverse import DesignConfig, run_design

    loaded = load_checkpoint(checkpoint)
    return lambda: run_design(loaded, DesignConfig.from_dict(DESIGN))


def _predict_workload(checkpoint: str) -> Any:
    import pandas as pd

    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.datasets import bundled_task
    from fm_engine.predict import predict_frame
    from fm_engine.threads import configure_threads

    loaded = load_checkpoint(checkpoint)
    formulas = bundled_task("bulk_modulus").frame()["composition"].tolist()
    frame = pd.DataFrame({"composition": (formulas * (20_000 // len(formulas) + 1))[:20_000]})

    def predict() -> None:
        configure_threads()  # what fm predict does at its start
        predict_frame(loaded, frame, distances=False)

    return predict


def worker(kind: str, checkpoint: str | None) -> None:
    """Build the workload, then for every line ``run`` on stdin run it once and print its wall time (s)."""
    if kind == "busy":
        while True:
            pass
    import fm_engine  # noqa: F401  (first: sets the thread policy's environment before torch loads OpenMP)

    work = {"train": _train_workload, "design": _design_workload, "predict": _predict_workload}[kind]
    run = work() if kind == "train" else work(checkpoint)
    run()  # warm-up
    import torch

    print(f"ready threads={torch.get_num_threads()}", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        run()
        print(f"{time.perf_counter() - start:.6f} threads={torch.get_num_threads()}", flush=True)


# ---------------------------------------------------------------- driver side
class Worker:
    def __init__(self, kind: str, env: dict[str, str], cpus: str | None, checkpoint: str | None) -> None:
        command = [sys.executable, __file__, "--worker", kind] + (["--checkpoint", checkpoint] if checkpoint else [])
        if cpus:
            command = ["taskset", "-c", cpus, *command]
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=full_env, cwd=ROOT)  # fmt: skip
        if kind != "busy":
            self.threads = self._line().split("threads=")[1]

    def _line(self) -> str:
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"worker {self.process.args} ended (exit {self.process.wait()})")
        return line.strip()

    def start(self) -> None:
        self.process.stdin.write("run\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def result(self) -> tuple[float, str]:
        seconds, threads = self._line().split()
        return float(seconds), threads.split("=")[1]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def measure(kind: str, env: dict[str, str], *, rounds: int, cpus: str | None, checkpoint: str | None) -> dict:
    a, b = Worker(kind, env, cpus, checkpoint), Worker(kind, env, cpus, checkpoint)
    alone, pair, busy_times, threads = [], [], [], {"alone": set(), "pair": set(), "busy": set()}
    try:
        for _ in range(rounds):
            a.start()
            seconds, used = a.result()
            alone.append(seconds)
            threads["alone"].add(used)
            a.start()
            b.start()
            (sa, ua), (sb, ub) = a.result(), b.result()
            pair.append(max(sa, sb))
            threads["pair"] |= {ua, ub}
            busy = Worker("busy", {}, cpus, None)
            try:
                a.start()
                seconds, used = a.result()
            finally:
                busy.close()
            busy_times.append(seconds)
            threads["busy"].add(used)
    finally:
        a.close()
        b.close()
    med = {name: statistics.median(v) for name, v in (("alone", alone), ("pair", pair), ("busy", busy_times))}
    return {
        "seconds_alone": med["alone"],
        "seconds_beside_same_kind": med["pair"],
        "seconds_beside_busy_loop": med["busy"],
        "slowdown_beside_same_kind": med["pair"] / med["alone"],
        "slowdown_beside_busy_loop": med["busy"] / med["alone"],
        "threads": {k: sorted(v) for k, v in threads.items()},
        "all_seconds": {"alone": alone, "beside_same_kind": pair, "beside_busy_loop": busy_times},
    }


def small_checkpoint() -> str:
    """A 3-epoch demo checkpoint in bench/results (trained once, one thread)."""
    run = ROOT / "bench" / "results" / "contention_demo_run"
    if not (run / "checkpoint").exists():
        print("training a small demo checkpoint once ...", flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FM_DEMO_MAX_EPOCHS": "3", "FM_NUM_THREADS": "1"}
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            subprocess.run([sys.executable, "-m", "fm_engine.cli", "demo", "--out", str(out), "--no-progress"],
                           env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            run.parent.mkdir(parents=True, exist_ok=True)
            out.rename(run) if not run.exists() else None
    return str(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help="checkpoint for design/predict (default: a small demo one)")
    parser.add_argument("--kinds", default="train,design,predict", help="train, design, predict (comma-separated)")
    parser.add_argument("--policies", default="before,after", help="before, after (comma-separated)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per figure (median)")
    parser.add_argument("--cpus", help="pin every process of the benchmark to these CPUs (taskset -c)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.checkpoint)
        return
    sys.path.insert(0, str(ROOT))
    from _common import OtherLoad, environment, print_environment, write_result

    env = environment()
    print_environment(env)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    checkpoint = args.checkpoint or (small_checkpoint() if {"design", "predict"} & set(kinds) else None)
    results: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        for policy in [p.strip() for p in args.policies.split(",") if p.strip()]:
            with OtherLoad() as load:
                row = measure(kind, POLICIES[policy], rounds=args.rounds, cpus=args.cpus, checkpoint=checkpoint)
            row["other_load_besides_benchmark"] = load.share
            results.setdefault(kind, {})[policy] = row
            print(f"{kind:8s} {policy:7s} alone {row['seconds_alone']:.3f} s | beside the same kind "
                  f"{row['seconds_beside_same_kind']:.3f} s (x{row['slowdown_beside_same_kind']:.1f}) | beside a "
                  f"busy loop {row['seconds_beside_busy_loop']:.3f} s (x{row['slowdown_beside_busy_loop']:.1f}) | "
                  f"threads {row['threads']} | other load {100 * load.share:.0f} %", flush=True)  # fmt: skip
    path = write_result("contention", {"environment": env, "cpus": args.cpus, "rounds": args.rounds,
                                       "results": results})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
