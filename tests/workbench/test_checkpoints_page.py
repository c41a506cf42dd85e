"""The Checkpoints page: list with model cards, compare two, delete with confirmation, corrupt checkpoints."""

import json
import re
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from fm_engine.cards import ModelCard
from tests.workbench.conftest import open_page
from workbench.components.cards import compare_cards
from workbench.runs import delete_run


def table(at: AppTest, *columns: str):
    """The first table showing all these columns (read-only tables carry no key in AppTest)."""
    for frame in at.dataframe:
        value = frame.value
        if set(columns) <= set(value.columns):
            return value
    raise AssertionError(f"no table with columns {columns}")


def second_run(run, name="tiny2", factor=2.0):
    """A copy of the tiny run whose card has its MAE and RMSE multiplied by ``factor`` (to compare)."""
    other = run.parent / name
    shutil.copytree(run, other)
    card_path = other / "checkpoint" / "card.json"
    card = json.loads(card_path.read_text())
    card["name"] = name
    for task in card["tasks"]:
        for key in ("mae", "rmse"):
            if key in task["test_metrics"]:
                task["test_metrics"][key] *= factor
    card_path.write_text(json.dumps(card))
    return other


def test_empty_workspace_points_to_the_demo(workspace):
    at = open_page("checkpoints")
    assert "No checkpoint" in at.info[0].value


def test_lists_checkpoints_with_their_model_cards(workspace_with_model):
    at = open_page("checkpoints")
    overview = table(at, "checkpoint", "problem")
    assert list(overview["checkpoint"]) == ["tiny"]
    assert overview["tasks"].iloc[0] == "bulk_modulus, hea_phase, yield_strength"
    tasks = table(at, "task", "unit", "t unit").set_index("task")
    assert tasks.loc["bulk_modulus", "unit"] == "GPa"
    assert tasks.loc["yield_strength", "t unit"] == "K"
    assert tasks.loc["hea_phase", "unit"].startswith("classes: BCC")
    metrics = table(at, "task", "metric", "95 % CI").set_index(["task", "metric"])
    bulk = metrics.loc[("bulk_modulus", "MAE")]
    low, high = map(float, re.match(r"\[(\S+), (\S+)\]", bulk["95 % CI"]).groups())
    assert low < bulk["value"] < high and bulk["unit"] == "GPa"
    card = json.loads((workspace_with_model / "checkpoint" / "card.json").read_text(encoding="utf-8"))
    reach = {e["name"]: e["test_distance_to_training"]["max"] for e in card["tasks"]}
    assert tasks["test reaches (distance)"].to_dict() == reach
    assert set(table(at, "task", "dataset")["task"]) == {"bulk_modulus", "hea_phase", "yield_strength"}
    assert "torch" in set(table(at, "package", "version")["package"])
    assert any("Model card: tiny" in m.value for m in at.markdown)
    assert not at.error


def test_compare_two_checkpoints(workspace_with_model):
    second_run(workspace_with_model)
    at = open_page("checkpoints")
    at.selectbox(key="compare_a").select("tiny").run()
    at.selectbox(key="compare_b").select("tiny2").run()
    assert not at.exception
    metrics = table(at, "task", "metric", "better")
    assert list(metrics.columns) == [
        "task",
        "metric",
        "better",
        "tiny",
        "tiny2",
        "unit",
        "tiny 95 % CI",
        "tiny2 95 % CI",
    ]
    mae = metrics[(metrics["task"] == "bulk_modulus") & (metrics["metric"] == "MAE")].iloc[0]
    assert mae["unit"] == "GPa" and mae["tiny2"] == pytest.approx(2 * mae["tiny"]) and mae["better"] == "tiny"
    low, high = map(float, mae["tiny 95 % CI"].strip("[]").split(", "))
    assert low < mae["tiny"] < high
    auc = metrics[(metrics["task"] == "hea_phase") & (metrics["metric"] == "ROC-AUC")].iloc[0]
    assert auc["better"] == "" and auc["unit"] == ""
    assert "tiny2" in table(at, "tiny2", "").columns


def test_compare_calls_differences_inside_both_intervals_similar(workspace_with_model):
    second_run(workspace_with_model, name="tiny3", factor=1.02)
    card = json.loads((workspace_with_model / "checkpoint" / "card.json").read_text())
    card3 = json.loads((workspace_with_model.parent / "tiny3" / "checkpoint" / "card.json").read_text())
    metrics = compare_cards(ModelCard.from_mapping(card), ModelCard.from_mapping(card3), "tiny", "tiny3")
    mae = metrics[(metrics["task"] == "bulk_modulus") & (metrics["metric"] == "MAE")].iloc[0]
    assert mae["tiny3"] == pytest.approx(1.02 * mae["tiny"]) and mae["better"] == "similar"
    no_intervals = [{k: v for k, v in t.items() if k != "test_metrics_ci95"} for t in card3["tasks"]]
    old_card = dict(card3, tasks=no_intervals)  # a card written before intervals existed
    metrics = compare_cards(ModelCard.from_mapping(card), ModelCard.from_mapping(old_card), "tiny", "old")
    mae = metrics[(metrics["task"] == "bulk_modulus") & (metrics["metric"] == "MAE")].iloc[0]
    assert mae["better"] == "tiny" and mae["old 95 % CI"] == ""


def test_delete_asks_for_confirmation(workspace_with_model):
    other = second_run(workspace_with_model)
    at = open_page("checkpoints")
    at.selectbox(key="delete_choice").select("tiny2").run()
    at.button(key="delete_start").click().run()
    assert not at.exception
    assert "cannot be undone" in at.warning[0].value
    at.button(key="delete_cancel").click().run()
    assert other.exists() and not at.warning
    at.selectbox(key="delete_choice").select("tiny2").run()
    at.button(key="delete_start").click().run()
    at.button(key="delete_confirm").click().run()
    assert not at.exception
    assert not other.exists() and workspace_with_model.exists()
    assert "Deleted 'tiny2'" in at.success[0].value
    assert list(table(at, "checkpoint", "problem")["checkpoint"]) == ["tiny"]


def test_delete_refuses_folders_outside_the_workspace(workspace_with_model, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(ValueError, match="not a run folder"):
        delete_run(outside)
    assert outside.exists()


def test_corrupt_checkpoint_shows_a_clear_error(workspace_with_model):
    broken = second_run(workspace_with_model, "broken")
    (broken / "checkpoint" / "model.safetensors").write_bytes(b"not safetensors at all")
    (broken / "checkpoint" / "card.json").write_text("{ truncated")
    at = open_page("checkpoints")
    at.selectbox(key="card_choice").select("broken").run()
    assert not at.exception
    assert any("cannot be loaded" in e.value and "corrupt" in e.value for e in at.error)
    overview = table(at, "checkpoint", "problem").set_index("checkpoint")
    assert "unreadable" in overview.loc["broken", "problem"]
    at.selectbox(key="compare_a").select("broken").run()
    assert not at.exception
    assert any("broken: the model card is unreadable" in e.value for e in at.error)


def test_an_ensembles_card_shows_its_calibration_table_and_plot(workspace, tiny_ensemble):
    from fm_engine import load_checkpoint

    shutil.copytree(tiny_ensemble, workspace / "runs" / "ensemble")
    at = open_page("checkpoints")
    assert not at.error
    assert any("Calibration of the spread" in m.value for m in at.markdown)
    shown = table(at, "task", "factor", "±1 std after (%)").set_index("task")
    record = load_checkpoint(tiny_ensemble).card.ensemble.calibration
    assert set(shown.index) == set(record) == {"bulk_modulus", "yield_strength"}
    assert shown.loc["bulk_modulus", "±2 std after (%)"] == round(100 * record["bulk_modulus"].coverage_2_after, 1)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (plot,) = [c for c in charts if c["layout"]["title"]["text"].startswith("Calibration")]
    traces = {trace["name"]: trace["y"] for trace in plot["data"]}
    assert traces["bulk_modulus"] == pytest.approx(record["bulk_modulus"].observed_after)
    assert traces["bulk_modulus (raw std)"] == pytest.approx(record["bulk_modulus"].observed_before)


def test_a_single_models_card_has_no_calibration_section(workspace_with_model):
    at = open_page("checkpoints")
    assert not any("Calibration of the spread" in m.value for m in at.markdown)


def test_test_metrics_and_the_compare_verdict_are_read_without_scrolling_right(workspace_with_model):
    """At 1280 px the main column is about 820 px wide: the card's test metrics have a narrow table of their own
    (one row per task and metric) and the comparison says its verdict in a sentence above a table that starts with
    it."""
    second_run(workspace_with_model)
    at = open_page("checkpoints")
    at.selectbox(key="compare_a").select("tiny").run()
    at.selectbox(key="compare_b").select("tiny2").run()
    assert not at.exception
    metrics = table(at, "task", "metric", "95 % CI")
    assert list(metrics.columns) == ["task", "metric", "value", "95 % CI", "unit"]  # one row per task and metric
    assert {"MAE", "RMSE", "test n"} <= set(metrics.loc[metrics["task"] == "bulk_modulus", "metric"])
    compared = table(at, "task", "metric", "better")
    assert list(compared.columns[:5]) == ["task", "metric", "better", "tiny", "tiny2"]
    wins = int((compared["better"] == "tiny").sum())
    similar = int((compared["better"] == "similar").sum())
    verdicts = [m.value for m in at.markdown if m.value.startswith("**Verdict:**")]
    assert verdicts == [f"**Verdict:** **tiny** is better: tiny better on {wins}, tiny2 better on 0, similar on "
                        f"{similar} of {wins + similar} test metrics."]  # fmt: skip
    assert wins > 0  # tiny2's errors are doubled


def test_each_result_says_how_to_read_it(workspace, tiny_ensemble, tiny_run):
    from workbench.components.cards import HOW_TO_READ

    shutil.copytree(tiny_ensemble, workspace / "runs" / "ensemble")
    shutil.copytree(tiny_run, workspace / "runs" / "tiny")
    at = open_page("checkpoints")
    at.selectbox(key="card_choice").select("ensemble").run()
    at.selectbox(key="compare_a").select("ensemble").run()
    at.selectbox(key="compare_b").select("tiny").run()
    captions = [c.value for c in at.caption]
    for key in ("metrics", "tasks", "compare", "calibration_table", "calibration_plot"):
        assert HOW_TO_READ[key] in captions, key
