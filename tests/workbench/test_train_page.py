import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from fm_engine.training import TrainConfig
from tests.workbench.conftest import HOME
from workbench.components.train_form import FormValues, build_config, parse_hidden_dims, runs_table, validate
from workbench.runs import RunInfo, run_info
from workbench.state import UPLOADED_TASKS, WATCHED_RUN


def train_page() -> AppTest:
    at = AppTest.from_file(str(HOME), default_timeout=60)
    at.run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception
    return at


def submit(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    return at


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def test_form_helpers():
    assert parse_hidden_dims("256, 128") == [256, 128]
    assert parse_hidden_dims("64 32") == [64, 32]
    for bad in ("", "256, abc", "0", "-3"):
        with pytest.raises(ValueError):
            parse_hidden_dims(bad)
    values = FormValues(name="x", bundled=["hea_phase", "bulk_modulus"], hidden_dims="32,16", loss_balancer=True)
    assert validate(values) == []
    config = build_config(values, classification=["hea_phase"])
    assert config["tasks"] == [{"bundled": "hea_phase", "class_weights": "balanced"}, {"bundled": "bulk_modulus"}]
    assert config["model"]["encoder"]["hidden_dims"] == [32, 16]
    TrainConfig.from_dict(config)
    transformer = FormValues(name="t", bundled=["band_gap"], encoder="transformer", d_model=30, nhead=4)
    assert any("divisible" in e for e in validate(transformer))
    assert any("task" in e for e in validate(FormValues(name="x", bundled=[])))
    assert runs_table([]).empty


def test_form_renders_and_rejects_bad_input(workspace: Path):
    at = train_page()
    assert at.title[0].value == "Train"
    assert at.checkbox(key="train_task_hea_phase").label.startswith("hea_phase (classes: BCC")
    assert any("GPa" in c.label for c in at.checkbox)
    submit(at)
    assert "Select at least one task" in errors(at)
    at.checkbox(key="train_task_hea_phase").check()
    at.text_input(key="train_hidden_dims").input("256, abc")
    submit(at)
    assert "'abc' is not a whole number" in errors(at)
    assert not list((workspace / "runs").glob("*/status.json"))
    assert WATCHED_RUN not in at.session_state


def wait_until_final(run_dir: Path, seconds: float = 90) -> RunInfo:
    deadline = time.time() + seconds
    while run_info(run_dir).state in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    info = run_info(run_dir)
    assert info.state == "done", (info.status, (run_dir / "train.log").read_text(errors="replace")[-3000:])
    return info


def test_uploaded_task_is_written_to_the_workspace_and_trained(workspace: Path, tiny_data: Path):
    at = AppTest.from_file(str(HOME), default_timeout=60)
    frame = pd.read_csv(tiny_data / "bulk.csv")
    spec = {"name": "my_bulk", "type": "regression", "composition_column": "formula", "data_column": "target",
            "unit": "GPa"}  # fmt: skip
    at.session_state[UPLOADED_TASKS] = {"my_bulk": {"spec": spec, "frame": frame}}
    at.run()
    at.switch_page("../pages/train.py").run()
    box = at.checkbox(key="train_upload_my_bulk")
    assert box.label == "my_bulk (GPa)"
    box.check()
    at.text_input(key="train_name").input("")
    submit(at)
    assert "Give the run a name" in errors(at)
    assert not (workspace / "uploads").exists()

    at.selectbox(key="train_size_preset").select("small").run()  # outside the form: reruns at once
    assert at.text_input(key="train_hidden_dims").value == "128, 64"
    at.text_input(key="train_name").input("upload")
    at.checkbox(key="train_upload_my_bulk").check()
    at.number_input(key="train_epochs").set_value(1)
    submit(at)
    assert not at.error, errors(at)
    csv = workspace / "uploads" / "my_bulk.csv"
    pd.testing.assert_frame_equal(pd.read_csv(csv), frame)
    run_dir = Path(at.session_state[WATCHED_RUN])
    wait_until_final(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["tasks"][0]["data_files"] == [str(csv.resolve())]
    assert config["model"]["encoder"]["hidden_dims"] == [128, 64]


def test_valid_config_trains_in_a_separate_process(workspace: Path):
    at = train_page()
    at.text_input(key="train_name").input("hea-test")
    at.checkbox(key="train_task_hea_phase").check()
    at.text_input(key="train_hidden_dims").input("32, 16")
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_patience").set_value(2)
    at.toggle(key="train_autoencoder").set_value(False)
    submit(at)
    assert not at.error, errors(at)
    run_dir = Path(at.session_state[WATCHED_RUN])
    assert run_dir.parent == workspace / "runs" and run_dir.name.startswith("hea-test-")
    assert (run_dir / "status.json").exists()

    assert wait_until_final(run_dir).has_checkpoint

    at.run()
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert f"{run_dir.name}: done" in text
    assert any(run_dir.name in s.value for s in at.success)
    table = at.dataframe[0].value
    row = table[table["run"] == run_dir.name].iloc[0]
    assert row["state"] == "done" and row["epochs"] == "2 / 2"
    assert row["best val loss (normalised)"] > 0
    assert at.selectbox(key="fm_sidebar_checkpoint").value == run_dir.name

    # a new session with nothing watched: the monitor stays empty until a past run is picked
    fresh = train_page()
    assert any("No run is training" in i.value for i in fresh.info)
    fresh.selectbox(key="train_monitor_pick").select(run_dir.name).run()
    assert not fresh.exception
    assert f"{run_dir.name}: done" in "\n".join(m.value for m in fresh.markdown)
