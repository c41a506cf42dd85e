"""Issue 14, finding 8: the CPU thread policy (fm_engine.threads) that keeps training, design and prediction
graceful when other processes share the cores. Timings are in bench/contention.py; these test the choices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fm_engine.cli import main
from fm_engine.threads import DEFAULT_THREADS, fixed_threads, policy_enabled, thread_environment
from tests.ceiling import CEILING_S
from tests.conftest import tiny_config_dict

ROOT = Path(__file__).resolve().parents[2]


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


def _run_python(code: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("FM_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                                             "FM_THREAD_POLICY")}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(ROOT), **env},
                            capture_output=True, text=True, timeout=CEILING_S, check=True)  # fmt: skip
    return result.stdout.strip()


PROBE = """
import os, fm_engine
from fm_engine.threads import configure_threads
from tests.ceiling import CEILING_S
policy = configure_threads()
import torch
cpus = len(os.sched_getaffinity(0))
print(os.environ.get("OMP_WAIT_POLICY"), torch.get_num_threads(), policy and policy.threads, cpus)
"""


@pytest.mark.parametrize(("env", "threads"), [({}, str(DEFAULT_THREADS)), ({"FM_NUM_THREADS": "2"}, "2")])
def test_importing_fm_engine_sets_passive_waits_and_the_thread_count(env, threads):
    wait, torch_threads, chosen, _ = _run_python(PROBE, env).split()
    assert (wait, torch_threads, chosen) == ("PASSIVE", threads, threads)


def test_the_default_thread_count_does_not_depend_on_the_load():
    """Bit-reproducible runs: the same count with the other core busy as on a quiet machine."""
    quiet = _run_python(PROBE, {}).split()[1]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = _run_python(PROBE, {}).split()[1]
    finally:
        busy.kill()
        busy.wait()
    assert quiet == loaded == str(DEFAULT_THREADS)


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
    pid = runs._launcher(run_dir)[0]
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
