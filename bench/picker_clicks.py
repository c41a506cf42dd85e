"""Benchmark: seconds per click on the Inverse design page's periodic table (issue #18: 12 clicks took 9-12 s when
each click reran the whole page).

Starts ``streamlit run workbench/Home.py`` on a workspace with a trained model and drives it through Streamlit's
agent API, which reruns as a browser does (only the picker when the clicked button is inside its fragment). Prints
the seconds of a full page run and of each click; writes bench/results/picker_clicks.json.

Measured (2 busy cores, load ~5): 12 clicks 21.1 s before (median 1.9 s, each a full page run), 6.3 s with the
picker as a fragment (median 0.51 s); opening the page: 20 s.

Run: ``.venv/bin/python bench/picker_clicks.py [--workspace W] [--clicks 12]`` (default workspace: a temporary one
holding ``fm demo`` trained for 2 epochs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import environment, print_environment, write_result

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = "Ti V Cr Zr Nb Mo Hf Ta W Al Fe Ni".split()


def interact(url: str, body: dict) -> tuple[dict, float]:
    request = urllib.request.Request(f"{url}/_stcore/agent/interact", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    start = time.perf_counter()
    snapshot = json.loads(urllib.request.urlopen(request, timeout=600).read())
    return snapshot, time.perf_counter() - start


def demo_workspace(folder: Path) -> Path:
    out = folder / "runs" / "demo"
    print("training the demo model (2 epochs) ...")
    env = {**os.environ, "FM_DEMO_MAX_EPOCHS": "2"}
    subprocess.run([sys.executable, "-m", "fm_engine.cli", "demo", "--out", str(out), "--no-progress"], check=True,
                   env=env, capture_output=True)  # fmt: skip
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", help="a workspace holding a finished run (default: a fresh demo)")
    parser.add_argument("--clicks", type=int, default=len(ELEMENTS))
    args = parser.parse_args()
    env = environment()
    print_environment(env)
    temporary = Path(tempfile.mkdtemp(prefix="picker_bench_"))
    try:
        workspace = Path(args.workspace) if args.workspace else demo_workspace(temporary)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "workbench" / "Home.py"),
                   "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                   "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
                   "--server.enableAgentApi", "true"]  # fmt: skip
        server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "FM_WORKSPACE": str(workspace)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.5)
            snapshot, full_run = interact(url, {"page": "design"})
            session = snapshot["session_id"]
            _, clear = interact(url, {"session_id": session, "trigger": {"key": "fm_design_allowed__clear"}})
            clicks = []
            for symbol in ELEMENTS[: args.clicks]:
                snapshot, seconds = interact(url, {"session_id": session,
                                                   "trigger": {"key": f"fm_design_allowed__el_{symbol}"}})  # fmt: skip
                assert snapshot["status"] == "ready", snapshot["status"]
                clicks.append(seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    print(f"full page run (open the Design page): {full_run:.2f} s")
    print(f"{len(clicks)} element clicks: {sum(clicks):.2f} s in all, median {statistics.median(clicks):.3f} s, "
          f"max {max(clicks):.3f} s per click")  # fmt: skip
    write_result("picker_clicks", {"environment": env, "full_page_run_s": full_run, "clear_s": clear,
                                   "click_s": clicks, "elements": ELEMENTS[: args.clicks]})  # fmt: skip


if __name__ == "__main__":
    main()
