import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from fm_engine.training import TrainConfig
from fm_engine.training.run_files import RunDirectory
from tests.ceiling import CEILING_S
from tests.workbench.conftest import HOME, open_page
from workbench.components.monitor import ensemble_fraction, ensemble_headline
from workbench.components.train_form import (
    SCHEDULE_HAND,
    FormValues,
    RehearsalValues,
    build_config,
    build_rehearsal_config,
    parse_hidden_dims,
    runs_table,
    validate,
    validate_rehearsal,
)
from workbench.runs import RunInfo, cancel, run_info, start_rehearsal, submitted_config
from workbench.state import UPLOADED_TASKS, WATCHED_RUN


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
    fixed = build_config(FormValues(name="x", bundled=["glass_forming", "band_gap"], threshold_on_validation=False),
                         classification=["glass_forming"])  # fmt: skip
    assert [task.get("decision_threshold") for task in fixed["tasks"]] == [0.5, None]  # off: the most probable class
    assert TrainConfig.from_dict(fixed).task_specs()[0].decision_threshold == 0.5
    assert TrainConfig.from_dict(config).trainer.ema_decay == 0.999  # weight averaging is on by default
    no_averaging = build_config(FormValues(name="x", bundled=["band_gap"], weight_averaging=False))
    assert TrainConfig.from_dict(no_averaging).trainer.ema_decay is None
    transformer = FormValues(name="t", bundled=["band_gap"], encoder="transformer", d_model=30, nhead=4)
    assert any("divisible" in e for e in validate(transformer))
    assert any("task" in e for e in validate(FormValues(name="x", bundled=[])))
    assert runs_table([]).empty


def test_form_renders_and_rejects_bad_input(workspace: Path):
    at = open_page("train")
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


def wait_until_final(run_dir: Path, seconds: float = CEILING_S) -> RunInfo:
    deadline = time.time() + seconds
    while run_info(run_dir).state in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    info = run_info(run_dir)
    assert info.state == "done", (info.status, (run_dir / "train.log").read_text(errors="replace")[-3000:])
    return info


def test_uploaded_task_is_written_to_the_workspace_and_trained(workspace: Path, tiny_data: Path):
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
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
    at.radio(key="train_schedule").set_value(SCHEDULE_HAND)
    at.number_input(key="train_epochs").set_value(1)
    submit(at)
    assert not at.error, errors(at)
    (csv,) = (workspace / "uploads").glob("my_bulk-*.csv")  # the name + a digest of the name and the table
    pd.testing.assert_frame_equal(pd.read_csv(csv), frame)
    run_dir = Path(at.session_state[WATCHED_RUN])
    wait_until_final(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["tasks"][0]["data_files"] == [str(csv.resolve())]
    assert config["model"]["encoder"]["hidden_dims"] == [128, 64]


def test_valid_config_trains_in_a_separate_process(workspace: Path):
    at = open_page("train")
    at.text_input(key="train_name").input("hea-test")
    at.checkbox(key="train_task_hea_phase").check()
    at.text_input(key="train_hidden_dims").input("32, 16")
    at.radio(key="train_schedule").set_value(SCHEDULE_HAND)
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_patience").set_value(2)
    at.toggle(key="train_autoencoder").set_value(False)
    at.toggle(key="train_ema").set_value(False)
    submit(at)
    assert not at.error, errors(at)
    run_dir = Path(at.session_state[WATCHED_RUN])
    assert run_dir.parent == workspace / "runs" and run_dir.name.startswith("hea-test-")
    assert (run_dir / "status.json").exists()

    assert wait_until_final(run_dir).has_checkpoint
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["trainer"]["ema_decay"] is None
    hand = FormValues()  # the by-hand numbers are sent and kept
    assert (config["trainer"]["max_epochs"], config["trainer"]["patience"]) == (2, 2)
    assert (config["data"]["batch_size"], config["data"]["val_ratio"]) == (hand.batch_size, hand.val_ratio)

    at.run()
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert f"{run_dir.name}: done" in text
    line = f"Schedule (set by hand): up to 2 epochs, patience 2, batch {hand.batch_size}, validation share "
    assert any(c.value == f"{line}{hand.val_ratio:g}." for c in at.caption)
    assert any(run_dir.name in s.value for s in at.success)
    table = at.dataframe[0].value
    row = table[table["run"] == run_dir.name].iloc[0]
    assert row["state"] == "done" and row["epochs"] == "2 / 2"
    assert row["best val loss (normalised)"] > 0
    assert at.selectbox(key="fm_sidebar_checkpoint").value == run_dir.name

    # a new session with nothing watched: the monitor stays empty until a past run is picked
    fresh = open_page("train")
    assert any("No run is training" in i.value for i in fresh.info)
    fresh.selectbox(key="train_monitor_pick").select(run_dir.name).run()
    assert not fresh.exception
    assert f"{run_dir.name}: done" in "\n".join(m.value for m in fresh.markdown)


# ------------------------------------------------------------------------------------------ fine-tune, rehearsal
def click(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception
    return at


def text_of(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def wait_for(predicate, seconds: float = CEILING_S, what: str = "") -> None:
    deadline = time.time() + seconds
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_rehearsal_helpers_build_a_config_the_engine_accepts():
    from fm_engine.training.rehearsal import RehearsalConfig

    values = RehearsalValues(name="r", tasks=["yield_strength", "hea_phase"], replay_ratio=0.25, preset="small")
    assert validate_rehearsal(values) == []
    config = build_rehearsal_config(values, classification=["hea_phase"])
    assert [t["bundled"] for t in config["tasks"]] == ["yield_strength", "hea_phase"]  # the chosen order
    assert config["tasks"][1]["class_weights"] == "balanced"
    assert config["replay_ratio"] == 0.25 and config["model"]["encoder"]["hidden_dims"] == [128, 64]
    assert RehearsalConfig.from_dict(config).task_names == ["yield_strength", "hea_phase"]
    both = RehearsalValues(name="t", tasks=["band_gap", "hea_phase"], encoder="transformer")
    transformer = build_rehearsal_config(both)
    assert transformer["model"]["encoder"]["d_model"] == 32
    assert any("at least two" in e for e in validate_rehearsal(RehearsalValues(name="x", tasks=["band_gap"])))
    assert any("only once" in e for e in validate_rehearsal(RehearsalValues(name="x", tasks=["a", "a"])))


def test_finetune_form_needs_a_model_and_a_task(workspace: Path, tiny_run: Path):
    at = open_page("train")
    assert any("No finished model" in i.value for i in at.info)  # nothing to fine-tune in an empty workspace
    shutil.copytree(tiny_run, workspace / "runs" / "tiny")
    at.run()
    assert at.selectbox(key="finetune_source").value == "tiny"
    labels = at.multiselect(key="finetune_tasks_tiny").options
    assert "bulk_modulus (GPa)" in labels and any(label.startswith("hea_phase (classes:") for label in labels)
    click(at, "Start fine-tuning")
    assert "Select at least one task whose head is retrained" in errors(at)
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == ["tiny"]


def test_finetune_started_from_the_train_page_runs_and_reports_before_and_after(workspace_with_model: Path):
    at = open_page("train")
    at.selectbox(key="finetune_source").select("tiny").run()
    at.multiselect(key="finetune_tasks_tiny").select("hea_phase")
    at.number_input(key="finetune_epochs").set_value(2)
    at.selectbox(key="finetune_lr").select(0.01)
    at.text_input(key="finetune_name_tiny").input("tuned")
    click(at, "Start fine-tuning")
    assert not at.error, errors(at)
    run_dir = Path(at.session_state[WATCHED_RUN])
    assert run_dir.name.startswith("tuned-") and run_dir.parent == workspace_with_model.parent
    assert json.loads((run_dir / "status.json").read_text())["kind"] == "finetune"

    assert wait_until_final(run_dir).has_checkpoint
    card = json.loads((run_dir / "checkpoint" / "card.json").read_text())
    assert card["finetune"]["trained_heads"] == ["hea_phase"]
    assert card["config"]["optimizer"]["lr"] == 0.01 and card["config"]["trainer"]["max_epochs"] == 2

    at.run()
    assert not at.exception
    assert f"{run_dir.name}: done" in text_of(at)
    comparison = next(d.value for d in at.dataframe if "before" in d.value.columns)
    bulk = comparison[comparison["test metric"] == "MAE (GPa)"].iloc[0]
    assert bulk["task"] == "bulk_modulus" and bulk["before"] == bulk["after"] and not bulk["retrained"]
    assert comparison[comparison["task"] == "hea_phase"]["retrained"].all()
    runs = next(d.value for d in at.dataframe if "kind" in d.value.columns).set_index("run")
    assert runs.loc[run_dir.name, "kind"] == "fine-tune" and runs.loc["tiny", "kind"] == "training"


def rehearsal_page(tasks: list[str], epochs: int, patience: int = 10) -> AppTest:
    at = open_page("train")
    at.text_input(key="rehearsal_name").input("forget")
    for task in tasks:  # the multiselect keeps the order of picking
        at.multiselect(key="rehearsal_tasks").select(task)
    at.selectbox(key="rehearsal_preset").select("small")
    at.slider(key="rehearsal_replay").set_value(0.2)
    at.number_input(key="rehearsal_epochs").set_value(epochs)
    at.number_input(key="rehearsal_patience").set_value(patience)
    click(at, "Start rehearsal")
    assert not at.error, errors(at)
    return at


def test_rehearsal_form_rejects_a_single_task(workspace: Path):
    at = open_page("train")
    at.multiselect(key="rehearsal_tasks").select("hea_phase")
    click(at, "Start rehearsal")
    assert "at least two tasks" in errors(at)
    assert not list((workspace / "runs").iterdir())


def test_rehearsal_started_from_the_train_page_finishes_and_opens_in_studies(workspace: Path):
    at = rehearsal_page(["yield_strength", "hea_phase"], epochs=1)
    run_dir = Path(at.session_state[WATCHED_RUN])
    config = yaml.safe_load((run_dir.parent / f".{run_dir.name}.yaml").read_text())
    assert [t["bundled"] for t in config["tasks"]] == ["yield_strength", "hea_phase"]
    assert config["replay_ratio"] == 0.2 and config["trainer"]["max_epochs"] == 1

    info = wait_until_final(run_dir)
    assert info.has_checkpoint and info.status["kind"] == "rehearsal"
    assert [s["task"] for s in info.status["steps"]] == ["yield_strength", "hea_phase"]
    forgetting = pd.read_csv(run_dir / "forgetting.csv")
    assert list(forgetting["task"]) == ["yield_strength", "hea_phase"]

    at.run()
    assert not at.exception
    text = text_of(at)
    assert f"{run_dir.name}: done" in text
    assert "step 1: **yield_strength**" in text and "step 2: **hea_phase**" in text
    assert any("final model of this rehearsal" in s.value for s in at.success)
    runs = next(d.value for d in at.dataframe if "kind" in d.value.columns).set_index("run")
    assert runs.loc[run_dir.name, "kind"] == "rehearsal" and runs.loc[run_dir.name, "epochs"] == "step 2 / 2"
    assert run_dir.name in at.selectbox(key="fm_sidebar_checkpoint").options  # the final model is a checkpoint

    at.switch_page("../pages/studies.py").run()
    assert not at.exception
    assert at.selectbox(key="studies_pick").value == run_dir.name
    table = at.dataframe[0].value
    assert "yield_strength: test curve RMSE (MPa)" in table.columns
    assert table["test error"].iloc[0] == "after step 1 (+yield_strength)"


def test_rehearsal_is_monitored_live_and_cancelled(workspace: Path):
    at = rehearsal_page(["yield_strength", "hea_phase"], epochs=2000, patience=500)
    run_dir = Path(at.session_state[WATCHED_RUN])
    try:

        def step_one_training() -> bool:
            status = run_info(run_dir).status
            assert run_info(run_dir).state in ("queued", "running"), status
            current = status.get("current_run")
            return bool(current) and len(RunDirectory(run_dir / current).read_metrics()) > 2

        wait_for(step_one_training, what="step 1 to train")
        at.run()
        assert not at.exception
        text = text_of(at)
        assert "step 1 / 2: learning yield_strength" in at.get("progress")[0].proto.text
        assert "**Current step** (`step_1_yield_strength`)" in text
        assert "step 2: **hea_phase** (added, earlier tasks replayed): queued" in text
        assert len(at.get("plotly_chart")) == 2  # the current step's loss and metric curves

        studies = open_page("studies")  # another session finds it running
        assert any("still running" in i.value for i in studies.info)
        click(studies, "Watch it live on the Train page")
        assert studies.session_state[WATCHED_RUN] == str(run_dir) and studies.title[0].value == "Train"

        click(at, "Cancel rehearsal")
        wait_for(lambda: run_info(run_dir).state not in ("queued", "running"), 60, "the rehearsal to stop")
        assert run_info(run_dir).state == "cancelled", run_info(run_dir).status
        at.run()
        assert f"{run_dir.name}: cancelled" in text_of(at)
        at.switch_page("../pages/studies.py").run()
        assert any("--resume" in w.value for w in at.warning)
    finally:
        cancel(run_dir)  # never leave a 2000-epoch process behind when an assertion fails


def test_a_process_that_dies_before_writing_its_status_is_reported_failed(workspace: Path):
    config = build_rehearsal_config(RehearsalValues(name="bad", tasks=["hea_phase", "no_such_task"]))
    run_dir = start_rehearsal(config, "bad")
    assert run_info(run_dir).state in ("queued", "failed")
    wait_for(lambda: run_info(run_dir).state == "failed", 60, "the failure to be noticed")
    assert "no_such_task" in run_info(run_dir).status["message"]


# ------------------------------------------------------------------------------------------ ensembles
def test_ensemble_members_field_builds_the_ensemble_section():
    single = build_config(FormValues(name="x", bundled=["band_gap"]))
    assert "ensemble" not in single and TrainConfig.from_dict(single).ensemble.members == 1  # as before
    three = build_config(FormValues(name="x", bundled=["band_gap"], ensemble_members=3))
    assert three["ensemble"] == {"members": 3} and TrainConfig.from_dict(three).ensemble.members == 3
    assert any(
        "ensemble.members" in e for e in validate(FormValues(name="x", bundled=["band_gap"], ensemble_members=0))
    )
    assert ensemble_headline({"state": "running", "members": 3, "member": 1}) == "member 2 of 3"
    assert ensemble_headline({"state": "done", "members": 3, "member": 2}) == "3 members"
    side_by_side = {"state": "running", "members": 3, "member": 0, "training": [0, 1]}
    assert ensemble_headline(side_by_side) == "members 1, 2 of 3"
    assert ensemble_headline({"state": "running", "epoch": 4}) == ""  # a single model
    member = {"epoch": 5, "max_epochs": 10}
    assert ensemble_fraction({"members": 4, "member": 1}, member) == pytest.approx((1 + 0.5) / 4)


def test_an_ensemble_started_from_the_train_form_is_monitored_member_by_member(workspace: Path):
    at = open_page("train")
    at.text_input(key="train_name").input("ens")
    at.checkbox(key="train_task_bulk_modulus").check()
    at.text_input(key="train_hidden_dims").input("16, 8")
    at.radio(key="train_schedule").set_value(SCHEDULE_HAND)
    at.number_input(key="train_epochs").set_value(2000)
    at.number_input(key="train_patience").set_value(500)
    at.number_input(key="train_ensemble").set_value(2)
    submit(at)
    assert not at.error, errors(at)
    run_dir = Path(at.session_state[WATCHED_RUN])
    try:
        assert submitted_config(run_dir)["ensemble"] == {"members": 2}  # what the form sent

        def first_member_training() -> bool:
            status = run_info(run_dir).status
            assert run_info(run_dir).state in ("queued", "running"), status
            member = run_dir / "members" / "member_0"
            return status.get("members") == 2 and len(RunDirectory(member).read_metrics()) > 1

        wait_for(first_member_training, what="member 1 to train")
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["ensemble"]["members"] == 2  # what it trains
        at.run()
        assert not at.exception
        # the status line: member 1 (one after another) or members 1 and 2 (side by side, ensemble.parallel)
        assert re.search(r"members? 1(, 2)? of 2", text_of(at)), text_of(at)
        assert re.match(r"members? 1(, 2)? of 2: epoch ", at.get("progress")[0].proto.text)
        assert len(at.get("plotly_chart")) == 2  # the member's loss and metric curves
        assert sum(c.value.startswith("How to read this:") for c in at.caption) == 2  # one line under each
        click(at, "Cancel run")
        wait_for(lambda: run_info(run_dir).state not in ("queued", "running"), 60, "the ensemble to stop")
        assert run_info(run_dir).state == "cancelled", run_info(run_dir).status
    finally:
        cancel(run_dir)  # never leave a 2000-epoch process behind when an assertion fails
