"""Issue 14, finding 8: the CPU thread policy (fm_engine.threads) that keeps training, design and prediction
graceful when other processes share the cores. Timings are in bench/contention.py; these test the choices."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fm_engine.cli import main
from fm_engine.threads import (
    LoadMeter,
    allowed_cpus,
    available_cpus,
    choose_threads,
    fixed_threads,
    policy_enabled,
    thread_environment,
)
from tests.conftest import tiny_config_dict

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("cpus", "others_busy", "expected"),
    [
        (2, 0.0, 2),  # quiet: every core
        (2, 0.3, 2),  # a little background noise: still every core
        (2, 0.7, 1),  # most of a core taken: one thread (a team of 2 would wait for the descheduled one)
        (2, 1.0, 1),  # one busy process of the same kind
        (2, 6.0, 1),  # heavily over-subscribed: never below 1
        (8, 2.2, 6),
        (8, 0.0, 8),
        (1, 0.0, 1),
        (4, -0.5, 4),  # a measurement below zero counts as quiet, never above the CPUs
    ],
)
def test_threads_follow_the_free_cores(cpus, others_busy, expected):
    assert choose_threads(cpus=cpus, others_busy=others_busy) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"FM_NUM_THREADS": "auto"}, None),
        ({"FM_NUM_THREADS": " 3 "}, 3),
        ({"OMP_NUM_THREADS": "2"}, 2),  # the user's OpenMP setting is respected
        ({"FM_NUM_THREADS": "1", "OMP_NUM_THREADS": "4"}, 1),  # ours wins
    ],
)
def test_thread_count_overrides(env, expected):
    assert fixed_threads(env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FM_NUM_THREADS": "0"}, "FM_NUM_THREADS='0'"),
        ({"FM_NUM_THREADS": "-2"}, "FM_NUM_THREADS='-2'"),
        ({"FM_NUM_THREADS": "many"}, "FM_NUM_THREADS='many'"),
        ({"FM_NUM_THREADS": "1.5"}, "FM_NUM_THREADS='1.5'"),
        ({"OMP_NUM_THREADS": "zero"}, "OMP_NUM_THREADS='zero'"),
    ],
)
def test_bad_thread_count_is_named(env, named):
    with pytest.raises(ValueError, match="expected a whole number of threads >= 1") as error:
        fixed_threads(env)
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("env", "enabled"), [({}, True), ({"FM_THREAD_POLICY": "auto"}, True), ({"FM_THREAD_POLICY": "OFF"}, False)]
)
def test_policy_switch(env, enabled):
    assert policy_enabled(env) is enabled


def test_bad_policy_switch_is_named():
    with pytest.raises(ValueError, match="FM_THREAD_POLICY='sometimes': expected 'auto' or 'off'"):
        policy_enabled({"FM_THREAD_POLICY": "sometimes"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"OMP_WAIT_POLICY": "PASSIVE"}),  # waiting OpenMP threads sleep instead of spinning
        ({"OMP_WAIT_POLICY": "ACTIVE"}, {}),  # a user's own choice is kept
        ({"FM_THREAD_POLICY": "off"}, {}),  # the old behaviour, for comparison
    ],
)
def test_child_process_environment(env, expected):
    assert thread_environment(env) == expected


@pytest.mark.parametrize(
    ("cpu_max", "cpus", "expected"),
    [
        (None, {0, 1, 2, 3}, 4),  # no cgroup limit: the affinity mask
        ("max 100000", {0, 1, 2, 3}, 4),
        ("150000 100000", {0, 1, 2, 3}, 2),  # 1.5 CPUs of quota: 2 threads at most
        ("50000 100000", {0, 1, 2, 3}, 1),
        ("800000 100000", {0, 1}, 2),  # quota above the mask: the mask
        ("garbage", {5}, 1),
    ],
)
def test_available_cpus_from_mask_and_quota(tmp_path, cpu_max, cpus, expected):
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert available_cpus(cpus, cgroup_root=tmp_path) == expected


def test_available_cpus_of_this_process_is_its_affinity_mask():
    assert 1 <= available_cpus(cgroup_root=Path("/nonexistent")) == len(os.sched_getaffinity(0))
    assert allowed_cpus() == set(os.sched_getaffinity(0))


def test_load_meter_sees_a_busy_process_but_not_our_own_work():
    cpus = allowed_cpus()
    meter = LoadMeter(cpus)
    assert meter.read() != meter.read()  # too soon: NaN, the interval goes on
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        others = meter.read()
    finally:
        busy.kill()
        busy.wait()
    assert 0.5 <= others <= len(cpus) + 0.1  # the busy child (and whatever else runs) counts as others


def _run_python(code: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("FM_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                                             "FM_THREAD_POLICY")}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(ROOT), **env},
                            capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    return result.stdout.strip()


PROBE = """
import os, fm_engine
from fm_engine.threads import configure_threads
policy = configure_threads()
import torch
cpus = len(os.sched_getaffinity(0))
print(os.environ.get("OMP_WAIT_POLICY"), torch.get_num_threads(), policy and policy.threads, cpus)
"""


def test_importing_fm_engine_sets_passive_waits_and_fixed_threads_apply():
    wait, torch_threads, chosen, _ = _run_python(PROBE, {"FM_NUM_THREADS": "1"}).split()
    assert (wait, torch_threads, chosen) == ("PASSIVE", "1", "1")


def test_automatic_threads_stay_within_the_cpus():
    wait, torch_threads, chosen, cpus = _run_python(PROBE, {}).split()
    assert wait == "PASSIVE"
    assert torch_threads == chosen
    assert 1 <= int(chosen) <= int(cpus)


def test_policy_off_restores_torch_defaults():
    wait, torch_threads, chosen, cpus = _run_python(PROBE, {"FM_THREAD_POLICY": "off"}).split()
    assert (wait, chosen) == ("None", "None")
    assert torch_threads == cpus  # torch's default: a thread per core


def test_cli_names_a_bad_thread_override_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FM_NUM_THREADS", "lots")
    output = tmp_path / "out.csv"
    code = main(["predict", "--checkpoint", str(tmp_path / "nothing"), "--input", str(tmp_path / "in.csv"),
                 "--output", str(output)])  # fmt: skip
    assert code == 2
    assert "error: FM_NUM_THREADS='lots': expected a whole number of threads >= 1 or 'auto'" in capsys.readouterr().err
    assert not output.exists()


def test_workbench_training_process_carries_the_policy(tiny_data, tmp_path, monkeypatch):
    from workbench import runs

    monkeypatch.setenv("FM_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("FM_THREAD_POLICY", raising=False)
    assert runs.launch_environment()["OMP_WAIT_POLICY"] == "PASSIVE"
    config = tiny_config_dict(tiny_data, max_epochs=1)
    run_dir = runs.start_training(config, "threads")
    pid = int((run_dir / runs.LAUNCHER_PID).read_text())
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    finally:
        os.killpg(pid, 9)
        runs._CHILDREN[pid].wait()
    assert b"OMP_WAIT_POLICY=PASSIVE" in environ
    assert yaml.safe_load((run_dir.parent / f".{run_dir.name}.yaml").read_text()) == config  # the config, unchanged


def test_workbench_keeps_a_users_wait_policy(monkeypatch):
    from workbench import runs

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert runs.launch_environment()["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("FM_THREAD_POLICY", "off")
    assert "OMP_WAIT_POLICY" not in runs.launch_environment()
