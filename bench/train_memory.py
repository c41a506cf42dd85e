"""Benchmark: peak memory (max RSS) of a demo training run, ``fm demo --out <tmp> --no-progress``.

What it measures
    The demo training runs as a subprocess exactly as a user starts it. Its peak resident set size comes
    from the kernel's accounting of that child (``os.wait4`` rusage ``ru_maxrss``, the same figure as
    ``resource.getrusage(RUSAGE_CHILDREN)``). While it runs, ``/proc/<pid>/status`` (VmRSS) is sampled
    every 50 ms together with the run's status.json state, to tell which phase reaches the peak:
    start-up + imports (no status.json yet), loading data (state "queued"), training + final evaluation
    + checkpoint (state "running"). For scale, the peak RSS of a child that only imports what the CLI
    imports (``fm_engine.cli``, ``fm_engine.training``, torch, lightning) is measured too.
    (psutil is not installed in the project's environment, and tracemalloc does not see torch's
    allocations, hence the kernel's figures.)

Goal
    No fixed target yet: this records the figure so regressions show up (the demo should train on a
    laptop CPU; 24 GiB machines are the anchor, 8 GiB laptops the floor).

Data loading at scale (``--rows 100000,1000000``)
    Instead of the demo: for each size a regression CSV of synthetic compositions (as
    ``bench/predict_throughput.py``: half bundled formulas, half random alloys) with a random target is
    written, and a child only builds the ``CompositionDataModule`` on it (read, parse, dedupe, descriptors,
    split); its peak RSS is printed with the import-only floor. Where the memory went before the fix
    (1M rows: 11 GB): per-row weight arrays then stacked (2x), per-row target objects, and the descriptor
    table in float64 three times over (computed, stacked from a per-key cache, filtered) before the
    float32 copy. Now: one preallocated weight table, vectorised dedupe, float32 descriptors built block by
    block. Goal: ~400k compositions in under 4 GiB.

Run
    ``.venv/bin/python bench/train_memory.py`` (the full demo, about 1-1.5 minutes on 2 cores)
    ``.venv/bin/python bench/train_memory.py --rows 100000,1000000`` (data loading only)
    ``.venv/bin/python bench/train_memory.py --max-epochs 5`` (quicker; the peak is usually reached
    before training ends).
Writes bench/results/train_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import OtherLoad, environment, print_environment, write_result

MIB = 1024 * 1024
SAMPLE_INTERVAL_S = 0.05
IMPORTS = "import fm_engine.cli, fm_engine.training, torch, lightning"


def fm_command() -> list[str]:
    """The installed ``fm`` script next to this interpreter, else ``python -m fm_engine.cli``."""
    script = Path(sys.executable).parent / "fm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fm_engine.cli"]


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def read_state(status_path: Path) -> str:
    try:
        return str(json.loads(status_path.read_text(encoding="utf-8")).get("state", "?"))
    except (OSError, json.JSONDecodeError):
        return "start-up"


def run_child(command: list[str], status_path: Path | None = None) -> dict[str, Any]:
    """Run ``command``; returns its max RSS (kernel), sampled peaks per phase, wall time and exit code."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - a file, not a pipe: a chatty child never blocks
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    peaks: dict[str, int] = {}
    samples = 0
    usage = None
    status = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        rss = rss_bytes(process.pid)
        if rss is not None:
            phase = read_state(status_path) if status_path else "running"
            peaks[phase] = max(peaks.get(phase, 0), rss)
            samples += 1
        time.sleep(SAMPLE_INTERVAL_S)
    process.returncode = os.waitstatus_to_exitcode(status)
    log.seek(0)
    output = log.read().decode(errors="replace")
    log.close()
    return {
        "command": command,
        "exit_code": process.returncode,
        "max_rss_bytes": usage.ru_maxrss * 1024,  # Linux: KiB
        "sampled_peak_bytes_by_phase": peaks,
        "samples": samples,
        "wall_seconds": time.perf_counter() - start,
        "output_tail": output.splitlines()[-5:],
    }


LOAD_DATA = """
import sys
from fm_engine.data import CompositionDataModule
from fm_engine.tasks import TaskSpec, TaskType
task = TaskSpec(name="target", type=TaskType.REGRESSION, data_files=[sys.argv[1]], data_column="target")
dm = CompositionDataModule([task])
dm.setup()
print(len(dm.keys), "compositions")
"""


def data_loading(sizes: list[int]) -> None:
    """Peak RSS of a child that builds the DataModule on a synthetic regression CSV of each size."""
    from predict_throughput import write_input

    env = environment()
    print_environment(env)
    imports = run_child([sys.executable, "-c", "import fm_engine.data, torch, lightning"])
    print(f"import-only child: {imports['max_rss_bytes'] / MIB:.1f} MiB")
    runs = []
    with tempfile.TemporaryDirectory(prefix="fm-bench-memory-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"train-{n}.csv"
            write_input(n, path, seed=1, target=True)  # in a child: this process stays small
            with OtherLoad() as load:
                child = run_child([sys.executable, "-c", LOAD_DATA, str(path)])
            if child["exit_code"] != 0:
                raise RuntimeError(f"loading failed: {child['output_tail']}")
            compositions = int(child["output_tail"][-1].split()[0])
            runs.append({"rows": n, "compositions": compositions, "max_rss_mib": child["max_rss_bytes"] / MIB,
                         "wall_seconds": child["wall_seconds"], "other_load": load.share})  # fmt: skip
            print(f"{n:>9,} rows ({compositions:,} unique compositions): peak RSS "
                  f"{child['max_rss_bytes'] / MIB:8.1f} MiB, {child['wall_seconds']:.1f} s", flush=True)  # fmt: skip
            path.unlink()
    result = {"environment": env, "imports_only_max_rss_mib": imports["max_rss_bytes"] / MIB, "runs": runs}
    print(f"wrote {write_result('train_memory_data', result)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-epochs", type=int, help="passed to fm demo (default: the demo's own, 60)")
    parser.add_argument("--rows", help="comma-separated row counts: measure data loading only (no demo)")
    args = parser.parse_args()
    if args.rows:
        data_loading([int(n) for n in args.rows.split(",") if n.strip()])
        return

    env = environment()
    print_environment(env)
    imports = run_child([sys.executable, "-c", IMPORTS])
    if imports["exit_code"] != 0:
        raise RuntimeError(f"import-only child failed: {imports['output_tail']}")
    with tempfile.TemporaryDirectory(prefix="fm-bench-memory-") as tmp:
        run_dir = Path(tmp) / "demo"
        command = [*fm_command(), "demo", "--out", str(run_dir), "--no-progress"]
        if args.max_epochs:
            command += ["--max-epochs", str(args.max_epochs)]
        print(f"running: {' '.join(command)}", flush=True)
        with OtherLoad() as load:
            demo = run_child(command, run_dir / "status.json")
        card_path = run_dir / "checkpoint" / "card.json"
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else {}
    if demo["exit_code"] != 0:
        raise RuntimeError(f"fm demo failed (exit {demo['exit_code']}): {demo['output_tail']}")

    epochs = card.get("training", {}).get("epochs_run")
    print(f"\nfm demo: exit {demo['exit_code']}, {epochs} epochs, {demo['wall_seconds']:.1f} s wall")
    print(f"  peak RSS (ru_maxrss of the child):        {demo['max_rss_bytes'] / MIB:8.1f} MiB")
    print(f"  import-only child (CLI, torch, lightning): {imports['max_rss_bytes'] / MIB:8.1f} MiB")
    above = (demo["max_rss_bytes"] - imports["max_rss_bytes"]) / MIB
    print(f"  training above the import floor:           {above:8.1f} MiB")
    print(f"  sampled peak RSS by phase ({demo['samples']} samples every {SAMPLE_INTERVAL_S * 1000:.0f} ms):")
    labels = {
        "start-up": "start-up + imports",
        "queued": "loading data",
        "running": "training, test, checkpoint",
    }
    for phase, peak in demo["sampled_peak_bytes_by_phase"].items():
        print(f"    {labels.get(phase, phase):<28} {peak / MIB:8.1f} MiB")
    if load.share > 0.1:
        print(f"note: other processes used {load.share:.0%} of the CPU meanwhile (wall time not comparable)")

    result = {
        "environment": env,
        "demo": demo,
        "imports_only": imports,
        "max_rss_mib": demo["max_rss_bytes"] / MIB,
        "imports_only_max_rss_mib": imports["max_rss_bytes"] / MIB,
        "epochs_run": epochs,
        "other_load": load.share,
    }
    print(f"wrote {write_result('train_memory', result)}")


if __name__ == "__main__":
    main()
