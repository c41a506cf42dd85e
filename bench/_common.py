"""Helpers shared by the bench scripts: environment report, GEMM peak, JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The 7 AFLOW regression tasks of the reference project's same-size model (ANCHORS.md).
AFLOW_TASKS = (
    "bulk_modulus",
    "shear_modulus",
    "debye_temperature",
    "thermal_conductivity_300K",
    "thermal_expansion_300K",
    "band_gap",
    "energy_per_atom",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """What the figures depend on; printed and stored with every result."""
    from importlib import metadata

    versions = {}
    for name in ("torch", "lightning", "numpy", "scikit-learn"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": versions,
    }


def print_environment(env: dict[str, Any]) -> None:
    versions = env["versions"]
    print(
        f"torch {versions.get('torch')} | float32 matmul precision: {env['float32_matmul_precision']} | "
        f"torch threads: {env['torch_threads']}"
    )
    print(
        f"CPU: {env['cpu']} ({env['cpu_count']} cores, {env['cpu_capability']}) | "
        f"load average {env['load_average_1min']:.2f}"
    )


def gemm_gflops(m: int, k: int, n: int, *, repeats: int = 7) -> float:
    """fp32 GEMM throughput (GFLOP/s, median) of ``(m, k) @ (k, n)`` at the current thread count."""
    a = torch.randn(m, k)
    b = torch.randn(k, n)
    for _ in range(2):
        a @ b
    inner = max(1, int(2e9 // (2 * m * k * n)))  # about 2 GFLOP per timing
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        timings.append((time.perf_counter() - start) / inner)
    return 2 * m * k * n / statistics.median(timings) / 1e9


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores; steal counts as busy) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Share of the machine's CPU used by *other* processes while the block ran (0 = quiet, 1 = all cores).

    Benchmarks on a shared 2-core machine are meaningless while e.g. a test suite runs beside them; this
    tells which runs were disturbed. Our own (and our waited-for children's) CPU time is subtracted.
    """

    def __init__(self) -> None:
        self.share = float("nan")

    def __enter__(self) -> OtherLoad:
        self._wall = time.perf_counter()
        self._busy = _machine_busy_seconds()
        self._own = sum(os.times()[:4])
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        others = (_machine_busy_seconds() - self._busy) - (sum(os.times()[:4]) - self._own)
        self.share = max(others, 0.0) / (wall * (os.cpu_count() or 1)) if wall > 0 else float("nan")


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return path
