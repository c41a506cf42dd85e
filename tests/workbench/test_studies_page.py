"""The Rehearsal & scaling page on real `fm scaling` and `fm rehearsal` outputs (tiny data, 1-2 epochs)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import plotly.io as pio
import pytest
from streamlit.testing.v1 import AppTest

from fm_engine.training import TrainConfig
from fm_engine.training.rehearsal import RehearsalConfig, run_rehearsal
from fm_engine.training.scaling import run_scaling
from tests.conftest import tiny_config_dict
from tests.workbench.conftest import open_page
from workbench.components.studies import find_studies, resolve_folder


@pytest.fixture(scope="module")
def scaling_out(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("studies") / "scaling-bulk"
    run_scaling(TrainConfig.from_dict(tiny_config_dict(tiny_data, max_epochs=1)), "bulk_modulus", [1, 0.5], out)
    return out


@pytest.fixture(scope="module")
def rehearsal_out(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("studies") / "rehearsal-tiny"
    config = tiny_config_dict(tiny_data, max_epochs=2) | {"replay_ratio": 0.3}
    assert run_rehearsal(RehearsalConfig.from_dict(config), out).state == "done"
    return out


def figure(at: AppTest, index: int = 0):
    return pio.from_json(at.get("plotly_chart")[index].proto.spec)


def test_empty_workspace_explains_the_commands(workspace: Path):
    at = open_page("studies")
    assert at.title[0].value == "Rehearsal & scaling"
    text = at.info[0].value
    assert "fm rehearsal" in text and "fm scaling" in text and "Train page" in text
    assert not at.get("plotly_chart")


def test_scaling_study_in_the_workspace(workspace: Path, scaling_out: Path):
    shutil.copytree(scaling_out, workspace / "runs" / "scaling-bulk")
    at = open_page("studies")
    assert at.selectbox(key="studies_pick").value == "scaling-bulk"
    assert at.selectbox(key="studies_pick").options == ["scaling-bulk (scaling study, done)"]
    assert "Scaling study" in at.subheader[0].value
    plot = figure(at)
    assert plot.layout.xaxis.type == "log" and plot.layout.yaxis.title.text == "MAE (GPa)"
    table = at.dataframe[0].value
    assert table.columns[0] == "kept fraction of bulk_modulus's training data"
    expected = {"bulk_modulus: training compositions", "bulk_modulus: test MAE (GPa)",
                "hea_phase: test error rate (1 - accuracy)", "yield_strength: test curve RMSE (MPa)"}  # fmt: skip
    assert expected <= set(table.columns)
    raw = pd.read_csv(scaling_out / "scaling.csv")
    bulk = raw[raw["task"] == "bulk_modulus"].set_index("ratio")
    shown = table.set_index(table.columns[0])
    assert shown.loc[0.5, "bulk_modulus: test MAE (GPa)"] == pytest.approx(bulk.loc[0.5, "test_error"])
    assert shown.loc[0.5, "bulk_modulus: training compositions"] == bulk.loc[0.5, "n_train"]
    assert [d.label for d in at.get("download_button")] == ["scaling.csv"]


def test_rehearsal_output_shows_forgetting_and_per_step_metrics(workspace: Path, rehearsal_out: Path):
    target = workspace / "runs" / "rehearsal-tiny"
    shutil.copytree(rehearsal_out, target)
    at = open_page("studies")
    assert at.selectbox(key="studies_pick").value == "rehearsal-tiny"
    assert "bulk_modulus -> hea_phase -> yield_strength" in at.markdown[0].value
    plot = figure(at)
    assert len(plot.data) == 3 and "GPa" in plot.layout.yaxis.title.text

    forgetting = at.dataframe[0].value.set_index("test error")
    raw = pd.read_csv(rehearsal_out / "forgetting.csv").set_index("task")
    column = "bulk_modulus: test MAE (GPa)"
    assert list(forgetting.columns) == [column, "hea_phase: test error rate (1 - accuracy)",
                                        "yield_strength: test curve RMSE (MPa)"]  # fmt: skip
    assert forgetting.loc["after step 2 (+hea_phase)", column] == pytest.approx(raw.loc["bulk_modulus", "step_2"])
    assert forgetting.loc["forgetting (final - right after)", column] == pytest.approx(
        raw.loc["bulk_modulus", "forgetting"]
    )
    assert pd.isna(forgetting.loc["after step 1 (+bulk_modulus)", "hea_phase: test error rate (1 - accuracy)"])

    metrics = pd.read_csv(rehearsal_out / "metrics.csv")
    test = metrics[(metrics["split"] == "test") & (metrics["task"] == "bulk_modulus") & (metrics["metric"] == "mae")]
    wide = at.dataframe[1].value
    assert list(wide["after step"]) == ["1: +bulk_modulus", "2: +hea_phase", "3: +yield_strength"]
    assert wide["bulk_modulus: MAE (GPa)"].tolist() == pytest.approx(test["value"].tolist())
    at.segmented_control(key="studies_split").set_value("val").run()
    val = metrics[(metrics["split"] == "val") & (metrics["task"] == "bulk_modulus") & (metrics["metric"] == "mae")]
    assert at.dataframe[1].value["bulk_modulus: MAE (GPa)"].tolist() == pytest.approx(val["value"].tolist())

    steps = at.dataframe[2].value
    assert list(steps["task added"]) == ["bulk_modulus", "hea_phase", "yield_strength"]
    assert (steps["state"] == "done").all()
    assert {"SUMMARY.md", "Steps (training rows, epochs, run folders)"} <= {e.label for e in at.expander}
    assert "# Continual rehearsal" in "\n".join(m.value for m in at.markdown)
    assert [d.label for d in at.get("download_button")] == ["forgetting.csv", "metrics.csv"]
    assert any("rehearsal-tiny" in c.value and "sidebar" in c.value for c in at.caption)


def test_a_typed_folder_is_opened_or_refused_with_a_reason(workspace: Path, tiny_run: Path, scaling_out: Path):
    at = open_page("studies")
    at.text_input(key="studies_path").input(str(tiny_run)).run()
    assert not at.exception
    assert "is not a rehearsal or scaling output" in at.error[0].value
    assert "rehearsal.json" in at.error[0].value and not at.get("plotly_chart")

    at.text_input(key="studies_path").input(str(tiny_run / "missing")).run()
    assert "There is no folder" in at.error[0].value

    at.text_input(key="studies_path").input(str(scaling_out / "scaling.csv")).run()  # a file: its folder
    assert not at.error and "Scaling study" in at.subheader[0].value
    assert len(at.get("plotly_chart")) == 1


def test_finding_studies_skips_ordinary_runs(workspace: Path, tiny_run: Path, scaling_out: Path, rehearsal_out: Path):
    runs = workspace / "runs"
    shutil.copytree(tiny_run, runs / "plain")
    shutil.copytree(scaling_out, runs / "s")
    shutil.copytree(rehearsal_out, runs / "r")
    found = {study.name: study.kind for study in find_studies(runs)}
    assert found == {"s": "scaling", "r": "rehearsal"}
    assert resolve_folder("")[0] is None and resolve_folder("")[1] == ""
    assert json.loads((runs / "r" / "rehearsal.json").read_text())["replay_ratio"] == 0.3
