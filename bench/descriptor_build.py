"""Benchmark: parse + descriptor build for 5,000 formulas (anchor: reference 1.3 s, goal <= 0.3 s).

Run: ``.venv/bin/python bench/descriptor_build.py``.
Prints figures and writes bench/results/descriptor_build.json.
Formulas are the bundled AFLOW + glass compositions (real, mostly unique strings), first 5,000.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from fm_engine.compositions import parse_many
from fm_engine.datasets import bundled_task
from fm_engine.descriptors import Descriptor


def main() -> None:
    columns = [bundled_task(name).frame()["composition"] for name in ("bulk_modulus", "glass_forming")]
    formulas = pd.concat(columns).tolist()[:5000]
    descriptor = Descriptor()  # KMD-1d, 464 dims
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        batch = parse_many(formulas)
        x = descriptor.transform(batch.weights)
        timings.append(time.perf_counter() - start)
    assert x.shape == (5000, 464) and batch.n_bad == 0
    result = {
        "n_formulas": len(formulas),
        "descriptor": descriptor.spec.to_dict(),
        "seconds_median": statistics.median(timings),
        "seconds_all": timings,
        "reference_seconds": 1.3,
        "goal_seconds": 0.3,
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"parse + KMD descriptor for {len(formulas)} formulas: median {result['seconds_median']:.3f} s "
        f"over 5 runs (reference 1.3 s, goal <= 0.3 s)"
    )
    out = Path(__file__).parent / "results" / "descriptor_build.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
