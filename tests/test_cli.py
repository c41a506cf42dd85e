import json
import subprocess
import sys

from fm_engine.cli import main
from fm_engine.datasets import bundled_tasks


def test_fm_datasets_lists_every_task_with_units_and_rows(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name, task in bundled_tasks().items():
        assert name in out
        assert str(task.n_rows) in out
    assert "GPa" in out and "W/(m K)" in out and "MPa" in out
    assert "license:" in out


def test_fm_datasets_json_from_the_installed_entry_point():
    command = [sys.executable, "-m", "fm_engine.cli", "datasets", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    records = json.loads(result.stdout)
    assert {r["task"] for r in records} == set(bundled_tasks())
    assert all(r["rows"] > 0 for r in records)
