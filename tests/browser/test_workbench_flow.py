"""A first visit in a real browser: the demo model trains from one click, then the pages work.

Each test has its own server and workspace (``app``: empty; ``app_with_demo``: a trained demo model), so the tests
run in any order and alone; every wait ends on a state (a run's status, the page showing X), never on a clock.
"""

import json
import re
import time

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from fm_engine.inverse import element_presets
from fm_engine.inverse.design import DISTINCT_DISTANCE
from fm_engine.training import RunDirectory
from fm_engine.training.run_files import now_iso
from tests.browser.conftest import CEILING_MS, CEILING_S, screenshot, wait_for_app, wait_for_run


def test_first_visit_trains_the_demo_model(app, page):
    url, workspace = app
    page.goto(url + "/")
    wait_for_app(page)
    expect(page.get_by_text("Start here: train the demo model")).to_be_visible()
    screenshot(page, "overview_first_visit")
    page.get_by_role("button", name="Train the demo model").click()
    expect(page.get_by_text("demo: running").or_(page.get_by_text("demo: queued"))).to_be_visible(timeout=CEILING_MS)
    screenshot(page, "overview_demo_training")
    status = wait_for_run(workspace / "runs" / "demo")
    assert status["state"] == "done", status
    expect(page.get_by_text("A model is ready")).to_be_visible(timeout=CEILING_MS)
    assert (workspace / "runs" / "demo" / "checkpoint" / "model.safetensors").exists()
    expect(page.get_by_text("Active checkpoint")).to_be_visible()
    screenshot(page, "overview_model_ready")
    page.goto(url + "/data")
    wait_for_app(page)
    expect(page.get_by_text("Bundled datasets").first).to_be_visible()
    screenshot(page, "data")
    assert not page.get_by_test_id("stException").count()


def set_number(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")  # commit by leaving the field (Enter would submit a form)
    wait_for_app(page)


def test_design_with_constraints_and_downloads(app_with_demo, page, tmp_path):
    url, _ = app_with_demo
    page.goto(url + "/design")
    wait_for_app(page)
    page.get_by_role("button", name="alloy_palette").click()
    wait_for_app(page)
    set_number(page, "Max elements per recipe (0 = no cap)", "4")
    fixed = page.get_by_role("textbox", name="Fixed amounts as text")
    fixed.fill("Al=0.1")
    fixed.press("Enter")
    wait_for_app(page)
    slider = page.get_by_role("slider").first  # diversity scale: 1.0 -> 0.5 in steps of 0.05
    slider.focus()
    for _ in range(10):
        slider.press("ArrowLeft")
    wait_for_app(page)
    set_number(page, "Number of seeds / starts", "12")  # issue 18: 12 asked gave 5 distinct (6 x Ta0.9Al0.1)
    set_number(page, "Steps", "80")
    screenshot(page, "design_form")
    page.get_by_role("button", name="Run design").click()
    expect(page.get_by_role("button", name="Download CSV")).to_be_visible(timeout=CEILING_MS)
    wait_for_app(page)
    expect(page.get_by_text("12 of 12 asked")).to_be_visible()  # the "Distinct recipes" metric
    expect(page.get_by_text("Element frequency").first).to_be_visible()
    expect(page.locator("[data-testid='stPlotlyChart']:visible").first).to_be_visible(timeout=CEILING_MS)
    screenshot(page, "design_results")
    page.get_by_role("tab", name="Seed → designed").click()
    expect(page.locator("[data-testid='stPlotlyChart']:visible").first).to_be_visible()
    screenshot(page, "design_seed_to_designed")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv_path = tmp_path / "recipes.csv"
    download.value.save_as(csv_path)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download JSON").click()
    json_path = tmp_path / "results.json"
    download.value.save_as(json_path)

    recipes = pd.read_csv(csv_path)
    results = json.loads(json_path.read_text())
    assert len(recipes) == 12 and recipes["constraints_ok"].all()
    x = recipes[[c for c in recipes.columns if c.startswith("x_")]].to_numpy()
    i, j = np.triu_indices(len(x), k=1)
    assert (0.5 * np.abs(x[i] - x[j]).sum(axis=1) > DISTINCT_DISTANCE).all()  # 12 distinct recipes
    assert results["distinct"]["asked"] == results["distinct"]["found"] == 12
    assert results["config"]["constraints"]["max_elements"] == 4
    assert results["config"]["constraints"]["fixed_amounts"] == {"Al": 0.1}
    assert results["config"]["constraints"]["diversity_scale"] == pytest.approx(0.5)
    allowed = set(element_presets()["alloy_palette"])
    for _, row in recipes.iterrows():
        fractions = {c[2:]: row[c] for c in recipes.columns if c.startswith("x_") and row[c] > 0}
        assert set(fractions) <= allowed and len(fractions) <= 4
        assert fractions["Al"] == pytest.approx(0.1)
        assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-6)
    assert not page.get_by_test_id("stException").count()

    # a reload (or a closed tab) empties the form; the last design's settings come back with one click
    page.reload()
    wait_for_app(page)
    expect(page.get_by_label("Steps", exact=True)).to_have_value("300")
    page.get_by_text("Restore design settings").click()
    page.get_by_role("button", name="Restore the last design settings").click()
    wait_for_app(page)
    expect(page.get_by_text("Restored the design settings")).to_be_visible()
    expect(page.get_by_label("Steps", exact=True)).to_have_value("80")
    expect(page.get_by_label("Number of seeds / starts", exact=True)).to_have_value("12")
    expect(page.get_by_label("Max elements per recipe (0 = no cap)", exact=True)).to_have_value("4")
    screenshot(page, "design_restored")
    assert not page.get_by_test_id("stException").count()


def test_train_monitor_advances_then_cancel(app, page):
    url, workspace = app
    page.goto(url + "/train")
    wait_for_app(page)
    page.get_by_text("bulk_modulus (GPa)", exact=True).click()
    page.get_by_text("set by hand", exact=True).click()  # the schedule (automatic by default)
    set_number(page, "Epochs, by hand (passes over the data)", "400")
    set_number(page, "Patience, by hand (epochs)", "400")
    page.get_by_role("button", name="Start training").click()
    wait_for_app(page)
    runs = [p for p in (workspace / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1  # one click, one run
    run = RunDirectory(runs[0])
    expect(page.get_by_text("running").first).to_be_visible(timeout=CEILING_MS)

    def shown_epoch() -> int:
        text = page.get_by_text(re.compile(r"epoch \d+ / 400")).first.inner_text()
        return int(re.search(r"epoch (\d+) /", text).group(1))

    expect(page.get_by_text(re.compile(r"epoch [1-9]\d* / 400")).first).to_be_visible(timeout=CEILING_MS)
    expect(page.get_by_text("Schedule (set by hand): up to 400 epochs, patience 400").first).to_be_visible()
    first = shown_epoch()
    deadline = time.monotonic() + CEILING_S  # the next epoch takes as long as the machine needs
    while shown_epoch() <= first and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert shown_epoch() > first  # the live monitor advances without a reload
    expect(page.locator("[data-testid='stPlotlyChart']:visible").first).to_be_visible(timeout=CEILING_MS)
    screenshot(page, "train_monitor")
    page.get_by_role("button", name="Cancel run").click()
    assert wait_for_run(run.path)["state"] == "cancelled"
    expect(page.get_by_text("cancelled").first).to_be_visible(timeout=CEILING_MS)
    screenshot(page, "train_cancelled")


def test_predict_csv_with_a_bad_row(app_with_demo, page, tmp_path):
    url, _ = app_with_demo
    source = tmp_path / "alloys.csv"
    source.write_text("formula,note\nNbMoTaW,refractory\nnot a formula!,typo\nAl0.5CoCrFeNi,cantor\n")
    page.goto(url + "/predict")
    wait_for_app(page)
    page.locator("input[type='file']").set_input_files(str(source))
    wait_for_app(page)
    expect(page.get_by_role("button", name="Download predictions (CSV)")).to_be_visible(timeout=CEILING_MS)
    expect(page.get_by_text("not a chemical formula").first).to_be_attached()  # a cell of the bad-rows table
    screenshot(page, "predict_csv")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download predictions (CSV)").click()
    path = tmp_path / "predicted.csv"
    download.value.save_as(path)
    predicted = pd.read_csv(path, keep_default_na=False)
    assert list(predicted["formula"]) == ["NbMoTaW", "not a formula!", "Al0.5CoCrFeNi"]
    assert predicted.loc[1, "error"] and not predicted.loc[0, "error"] and not predicted.loc[2, "error"]
    assert float(predicted.loc[0, "bulk_modulus [GPa]"]) > 0
    page.goto(url + "/checkpoints")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Compare two checkpoints")).to_be_visible(timeout=CEILING_MS)
    expect(page.get_by_text("demo").first).to_be_attached()  # the demo run is listed (a table cell)
    screenshot(page, "checkpoints")
    assert not page.get_by_test_id("stException").count()


def test_a_run_is_followed_across_a_reload_then_cancelled_resumed_and_ready(app, page):
    """The issue's flows: the Past runs table follows the run live; a reload mid-run follows the same run (not a
    newer one of the workspace); a cancelled run resumes from the page and finishes with its "ready" message."""
    url, workspace = app
    page.goto(url + "/train")
    wait_for_app(page)
    page.get_by_text(re.compile(r"^hea_phase \(classes")).click()
    set_number(page, "Hidden layer widths (neurons per layer)", "16")
    page.get_by_text("set by hand", exact=True).click()
    set_number(page, "Epochs, by hand (passes over the data)", "200")
    set_number(page, "Patience, by hand (epochs)", "200")
    page.get_by_role("button", name="Start training").click()
    wait_for_app(page)
    run = next(p for p in (workspace / "runs").iterdir() if p.is_dir())
    expect(page.get_by_text(re.compile(r"epoch [1-9]\d* / 200")).first).to_be_visible(timeout=CEILING_MS)
    table = page.get_by_test_id("stDataFrame")  # Past runs, read again while the run trains (no reload)
    expect(table.get_by_text(re.compile(r"^[1-9]\d* / 200$")).first).to_be_attached(timeout=CEILING_MS)
    expect(table.get_by_text("running", exact=True).first).to_be_attached()

    other = RunDirectory(workspace / "runs" / "zz-someone-elses")  # a newer run of the workspace, queued
    other.update_status(state="queued", name="zz-someone-elses", message="starting", created_at=now_iso())
    assert f"run={run.name}" in page.url
    page.reload()
    wait_for_app(page)
    expect(page.get_by_text(f"{run.name}: running")).to_be_visible(timeout=CEILING_MS)
    expect(page.get_by_text("zz-someone-elses: queued")).to_have_count(0)
    screenshot(page, "train_reloaded_mid_run")

    page.get_by_role("button", name="Cancel run").click()
    assert wait_for_run(run)["state"] == "cancelled"
    expect(page.get_by_role("button", name="Resume run")).to_be_visible(timeout=CEILING_MS)
    stopped = RunDirectory(run).read_status()["epoch"]
    assert stopped < 200
    page.get_by_role("button", name="Resume run").click()
    expect(page.get_by_text(f"{run.name}: running").or_(page.get_by_text(f"{run.name}: queued"))).to_be_visible(
        timeout=CEILING_MS
    )
    status = wait_for_run(run)
    assert status["state"] == "done" and status["epoch"] == 200 and status["segments"] == 2, status
    expect(page.get_by_text(f"{run.name} is ready")).to_be_visible(timeout=CEILING_MS)
    expect(page.get_by_text("now the active model")).to_be_visible()
    screenshot(page, "train_resumed_ready")
    assert not page.get_by_test_id("stException").count()
