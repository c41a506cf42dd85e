"""Benchmark: `fm pretrain` at corpus scale: data ready, one epoch, the end of the run, predictions with distances.

What it measures, per corpus size (10k / 100k / 400k compositions by default), each size in its own process
(so its peak RSS is its own):

* ``cache_build_s``: building the memory-mapped caches (weights, descriptor) the first time (skipped when
  cached);
* ``data_ready_s``: from nothing loaded to the first batch being servable, with the caches on disk:
  ``load_corpus`` + ``CorpusDataModule.setup`` + the target scalers (what ``fm pretrain`` does before
  training);
* ``epoch_train_s``: one training epoch (EpochTimer, training steps only) of the default pretraining recipe
  (:func:`fm_engine.training.pretrain_config`: MLP [512, 256], batch 1024, autoencoder, weight averaging),
  run by ``fm_engine.training.train`` exactly as ``fm pretrain`` does; ``epoch_total_s`` adds the
  validation pass, run files and last.ckpt;
* ``end_of_run_s``: from the end of the last epoch to the written checkpoint (card metrics with bootstrap
  intervals, per-task distance reach, compositions.csv, the checkpoint files), with its parts;
* ``predict_rows_per_s``: ``load_checkpoint(run).predict(...)`` of 10,000 new compositions with the
  distance-to-training columns (first call: includes building the per-task reference indexes; second: warm);
* ``peak_rss_training_gib``: the process's peak resident memory up to the written checkpoint (data, training,
  end of run; file-backed pages of the memory map included), and ``peak_rss_gib`` after the predictions too.

Every time is given twice: wall time, and this process's CPU time (``*_cpu_s``). Training runs on one torch
thread, so on a quiet machine the two agree; on a shared one (other jobs, ``nice``) the CPU time is the figure
that says what the code costs, and the wall time what this machine gave.

Corpus: the real one when ``--corpus DIR`` is given (subsets by row range are not taken: the whole corpus),
else synthetic corpora in the contract format (tests/foundation/synthetic.py: DFT-like 2-5 element
compositions, 16 tasks labelled on 10-90 % of the rows, one of them a classification), cached in
``--work`` (default /tmp/fm_pretrain_bench).

Goals (issue 16): one epoch over ~400k compositions <= 30 s on 2 cores; data ready <= 10 s from the cache;
peak RSS <= 4 GiB; end of run <= 10 s; predictions with distances >= 10,000 rows/s against 400k.

Run: ``nice -n 10 .venv/bin/python bench/pretrain_epoch.py [--sizes 10000,100000,400000] [--corpus DIR]``.
Writes bench/results/pretrain_epoch.json (synthetic sizes) or pretrain_epoch_corpus.json (``--corpus``).
``--only-distances CHECKPOINT`` measures only a saved checkpoint's distance figures (no training; see
:func:`distances_only`) and writes pretrain_distances.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import environment, print_environment, write_result  # noqa: E402

EXTRA_TASKS = tuple((f"extra_{i}", "regression", "eV", 0.3) for i in range(12))


def synthetic_corpus(work: Path, n: int) -> Path:
    from tests.foundation.synthetic import DEFAULT_TASKS, write_synthetic_corpus

    path = work / f"synthetic_{n}"
    if not (path / "manifest.json").is_file():
        write_synthetic_corpus(path, n, seed=0, tasks=DEFAULT_TASKS + EXTRA_TASKS)
    return path


def one_size(corpus_dir: Path, *, epochs: int) -> dict[str, Any]:
    """Every figure for one corpus, in this process."""
    import numpy as np

    import fm_engine.training.trainer as trainer_module
    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.foundation.corpus import load_corpus
    from fm_engine.threads import configure_threads
    from fm_engine.training import RunDirectory, pretrain_config, train
    from fm_engine.training.trainer import build_datamodule, fit_scalers
    from tests.foundation.synthetic import synthetic_compositions

    configure_threads()
    import fm_engine.training.callbacks as callbacks_module

    epoch_cpu: list[float] = []
    timer = callbacks_module.EpochTimer
    start_epoch, end_epoch = timer.on_train_epoch_start, timer.on_train_epoch_end

    def on_start(self: Any, *args: Any) -> None:
        self._cpu_start = time.process_time()
        start_epoch(self, *args)

    def on_end(self: Any, *args: Any) -> None:
        end_epoch(self, *args)
        epoch_cpu.append(time.process_time() - self._cpu_start)

    timer.on_train_epoch_start, timer.on_train_epoch_end = on_start, on_end
    config = pretrain_config(corpus_dir)
    config.trainer.max_epochs = epochs
    started = time.perf_counter()
    corpus = load_corpus(corpus_dir)
    corpus.descriptor_matrix(config.descriptor)
    cache_build_s = time.perf_counter() - started

    started, cpu = time.perf_counter(), time.process_time()
    dm = build_datamodule(config)
    dm.setup()
    fit_scalers(dm)
    data_ready_s, data_ready_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    n_rows = len(dm.keys)
    del dm

    parts: dict[str, float] = {}

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            begin, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] = parts.get(name, 0.0) + time.perf_counter() - begin
                parts["cpu"] = parts.get("cpu", 0.0) + time.process_time() - cpu
                parts.setdefault("first_start", begin)
                parts["last_end"] = time.perf_counter()

        return wrapper

    for name in ("evaluate_for_card", "build_card", "training_compositions", "save_checkpoint"):
        setattr(trainer_module, name, timed(name, getattr(trainer_module, name)))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        result = train(config, run_dir, progress_bar=False)
        assert result.state == "done", result
        records = [r for r in RunDirectory(run_dir).read_metrics() if r["kind"] == "epoch"]
        epoch_train = [r["epoch_seconds"] for r in records]
        stamps = [r["time"] for r in records]
        epoch_total = np.diff(stamps).tolist() if len(stamps) > 1 else []
        end_of_run_s = parts["last_end"] - parts["first_start"]
        training_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # data + training + end

        checkpoint = load_checkpoint(run_dir)
        keys, _ = synthetic_compositions(10_000, seed=12345)
        speeds, cpu_speeds = [], []
        for _ in range(2):
            begin, cpu = time.perf_counter(), time.process_time()
            frame = checkpoint.predict(keys)
            speeds.append(len(keys) / (time.perf_counter() - begin))
            cpu_speeds.append(len(keys) / (time.process_time() - cpu))
        distance_columns = [c for c in frame.columns if c.endswith("distance_to_training")]
        metrics = {task.name: task.test_metrics for task in checkpoint.card.tasks}
    return {
        "corpus": str(corpus_dir),
        "n_compositions": n_rows,
        "n_tasks": len(corpus.tasks),
        "cache_build_s": round(cache_build_s, 2),
        "data_ready_s": round(data_ready_s, 2),
        "data_ready_cpu_s": round(data_ready_cpu_s, 2),
        "epoch_train_cpu_s": [round(s, 2) for s in epoch_cpu],
        "epoch_train_s": [round(s, 2) for s in epoch_train],
        "epoch_total_s": [round(s, 2) for s in epoch_total],
        "end_of_run_s": round(end_of_run_s, 2),
        "end_of_run_cpu_s": round(parts["cpu"], 2),
        "end_of_run_parts_s": {k: round(v, 2) for k, v in parts.items() if k not in ("first_start", "last_end", "cpu")},
        "predict_rows_per_s": {"first": round(speeds[0]), "warm": round(speeds[1])},
        "predict_rows_per_cpu_s": {"first": round(cpu_speeds[0]), "warm": round(cpu_speeds[1])},
        "load_average": os.getloadavg()[0],
        "distance_columns": len(distance_columns),
        "peak_rss_training_gib": round(training_rss_gib, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "test_metrics": metrics,
    }


def distances_only(checkpoint_dir: Path, *, n_queries: int = 10_000, repeats: int = 3) -> dict[str, Any]:
    """Distance-to-training figures of a saved checkpoint, without training: the first prediction after
    loading (it reads compositions.csv and builds the index, :func:`fm_engine.applicability.training_set`),
    warm predictions with and without the distance columns (best of ``repeats``), the search alone, and
    the card's distance reach as the end of a run computes it (an index over the training compositions and a
    search of the test compositions, :func:`fm_engine.cards.tested_reach_by_task`'s work). Wall and CPU."""
    import numpy as np

    from fm_engine import applicability
    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.compositions import parse_many
    from fm_engine.threads import configure_threads
    from tests.foundation.synthetic import synthetic_compositions

    configure_threads()
    keys, _ = synthetic_compositions(n_queries, seed=12345)

    def clock(function: Any) -> tuple[Any, float, float]:
        begin, cpu = time.perf_counter(), time.process_time()
        result = function()
        return result, time.perf_counter() - begin, time.process_time() - cpu

    checkpoint, load_s, load_cpu_s = clock(lambda: load_checkpoint(checkpoint_dir))
    record, record_s, record_cpu_s = clock(lambda: applicability.training_set(checkpoint))
    _, first_s, first_cpu_s = clock(lambda: checkpoint.predict(keys))
    warm = [clock(lambda: checkpoint.predict(keys))[1:] for _ in range(repeats)]
    bare = [clock(lambda: checkpoint.predict(keys, distances=False))[1:] for _ in range(repeats)]
    weights = parse_many(keys).weights
    search = [clock(lambda: applicability.nearest_by_group(weights, record.grouped))[1:] for _ in range(repeats)]

    def card_reach() -> np.ndarray:
        grouped = applicability.GroupedIndex(applicability.ReferenceIndex(record.weights), record.members)
        return applicability.nearest_by_group(record.test_weights, grouped)

    _, card_s, card_cpu_s = clock(card_reach)

    def best(pairs: list[tuple[float, float]]) -> tuple[float, float]:
        return min(p[0] for p in pairs), min(p[1] for p in pairs)

    (warm_s, warm_cpu_s), (bare_s, bare_cpu_s), (search_s, search_cpu_s) = best(warm), best(bare), best(search)
    return {
        "checkpoint": str(checkpoint_dir),
        "n_training": len(record.keys),
        "n_test": len(record.test_weights),
        "n_tasks": len(record.tasks),
        "n_queries": n_queries,
        "load_s": [round(load_s, 2), round(load_cpu_s, 2)],
        "training_set_s": [round(record_s, 2), round(record_cpu_s, 2)],
        "first_predict_rows_per_s": [
            round(n_queries / (record_s + first_s)),
            round(n_queries / (record_cpu_s + first_cpu_s)),
        ],
        "warm_predict_rows_per_s": [round(n_queries / warm_s), round(n_queries / warm_cpu_s)],
        "predict_without_distances_rows_per_s": [round(n_queries / bare_s), round(n_queries / bare_cpu_s)],
        "search_only_rows_per_s": [round(n_queries / search_s), round(n_queries / search_cpu_s)],
        "card_distances_s": [round(card_s, 2), round(card_cpu_s, 2)],
        "load_average": os.getloadavg()[0],
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,400000", help="synthetic corpus sizes")
    parser.add_argument("--corpus", help="a real corpus folder instead of the synthetic ones")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (the first one warms up)")
    parser.add_argument("--work", default="/tmp/fm_pretrain_bench", help="folder for the synthetic corpora")
    parser.add_argument("--only-distances", metavar="CHECKPOINT", help="only the distance figures of a checkpoint")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child: measure this corpus folder
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(Path(args.one), epochs=args.epochs)))
        return
    if args.only_distances:
        figures = distances_only(Path(args.only_distances))
        print("figures as [wall, CPU]:", json.dumps(figures))
        print(f"wrote {write_result('pretrain_distances', {'environment': environment(), 'results': [figures]})}")
        return
    env = environment()
    print_environment(env)
    if args.corpus:
        corpora = [Path(args.corpus)]
    else:
        work = Path(args.work)
        corpora = []
        for n in (int(s) for s in args.sizes.split(",")):
            begin = time.perf_counter()
            corpora.append(synthetic_corpus(work, n))
            print(f"synthetic corpus of {n} compositions ready in {time.perf_counter() - begin:.1f} s", flush=True)
    results = []
    for corpus in corpora:
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(corpus), "--epochs", str(args.epochs)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if child.returncode != 0:
            print(child.stdout[-2000:], child.stderr[-4000:])
            raise SystemExit(f"measuring {corpus} failed")
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(figures)
        print(
            f"{figures['n_compositions']:>7} compositions, {figures['n_tasks']} tasks: data ready "
            f"{figures['data_ready_s']} s (CPU {figures['data_ready_cpu_s']} s; cache build "
            f"{figures['cache_build_s']} s)"
            f" | epoch train {figures['epoch_train_s']} s (CPU {figures['epoch_train_cpu_s']} s), whole "
            f"{figures['epoch_total_s']} s | end of run {figures['end_of_run_s']} s "
            f"(CPU {figures['end_of_run_cpu_s']} s)"
            f" {figures['end_of_run_parts_s']} | predict+distances {figures['predict_rows_per_s']} rows/s "
            f"(per CPU s {figures['predict_rows_per_cpu_s']}) | peak RSS {figures['peak_rss_training_gib']} GiB "
            f"(with predictions {figures['peak_rss_gib']} GiB) "
            f"| load average {figures['load_average']:.1f}",
            flush=True,
        )
    name = "pretrain_epoch_corpus" if args.corpus else "pretrain_epoch"
    path = write_result(name, {"environment": env, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
