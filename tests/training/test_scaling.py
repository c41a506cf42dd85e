"""`fm scaling`: one run per keep-ratio of a task's training data, errors per ratio, a log-log plot."""

import json

import pandas as pd
import yaml

from fm_engine.cli import main
from tests.conftest import tiny_config_dict


def test_scaling_runs_one_model_per_ratio(tiny_data, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_data, max_epochs=2)))
    out = tmp_path / "scaling"
    assert main(["scaling", "--config", str(config), "--task", "bulk_modulus", "--ratios", "1,0.25",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    table = pd.read_csv(out / "scaling.csv")
    assert sorted(table["ratio"].unique()) == [0.25, 1.0]
    bulk = table[table["task"] == "bulk_modulus"].set_index("ratio")
    assert bulk.loc[0.25, "n_train"] == round(bulk.loc[1.0, "n_train"] * 0.25)
    assert (bulk["metric"] == "mae").all() and (bulk["unit"] == "GPa").all()
    other = table[table["task"] == "hea_phase"].set_index("ratio")
    assert other.loc[0.25, "n_train"] == other.loc[1.0, "n_train"]  # other tasks keep all their data
    assert (other["metric"] == "error").all()
    assert json.loads((out / "scaling.json").read_text())["task"] == "bulk_modulus"
    assert (out / "scaling.html").exists() and (out / "ratio_0.25" / "checkpoint").exists()
    status = json.loads((out / "status.json").read_text())  # what the workbench's monitor follows
    assert (status["kind"], status["state"], status["n_steps"], status["current_run"]) == ("scaling", "done", 2,
                                                                                          "ratio_0.25")  # fmt: skip
    assert status["finished_at"] >= status["created_at"]


def test_scaling_names_an_unknown_task(tiny_data, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_data, max_epochs=1)))
    assert main(["scaling", "--config", str(config), "--task", "nope", "--out", str(tmp_path / "s")]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
