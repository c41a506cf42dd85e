"""A first visit in a real browser with a foundation installed (the tiny one of tests/foundation/tiny_foundation.py,
through $FM_FOUNDATION_DIR) and an empty workspace: the foundation is the active checkpoint, a stability design on
it runs from one preset click, its card is shown read-only, and the Train form starts from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CEILING_MS, screenshot, serve, wait_for_app
from tests.browser.test_workbench_flow import set_number
from workbench.design import STABILITY_GROUP

LABEL = "Foundation (shipped): 3 DFT properties"


@pytest.fixture
def app_with_foundation(tmp_path: Path, tiny_foundation: Path) -> Iterator[tuple[str, Path]]:
    yield from serve(tmp_path / "workspace", foundation=tiny_foundation)


def test_a_stability_design_on_the_foundation_its_card_and_the_train_form(app_with_foundation, page, tmp_path):
    url, workspace = app_with_foundation
    page.goto(url + "/design")
    wait_for_app(page)
    expect(page.get_by_role("combobox", name="Active checkpoint")).to_have_value(LABEL)
    expect(page.get_by_text(STABILITY_GROUP, exact=True)).to_be_visible()
    page.get_by_role("button", name="below 0.05 eV/atom").click()  # energy above hull: one click
    wait_for_app(page)
    expect(page.get_by_label("To [eV/atom]").nth(1)).to_have_value("0.05")
    screenshot(page, "foundation_design_targets")
    set_number(page, "Number of seeds / starts", "3")
    set_number(page, "Steps", "30")
    screenshot(page, "foundation_design_form")
    page.get_by_role("button", name="Run design").click()
    expect(page.get_by_role("button", name="Download CSV")).to_be_visible(timeout=CEILING_MS)
    wait_for_app(page)
    expect(page.get_by_text("Stability targets (DFT heads from the foundation)")).to_be_visible()
    screenshot(page, "foundation_design_results")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv_path = tmp_path / "recipes.csv"
    download.value.save_as(csv_path)
    recipes = pd.read_csv(csv_path)
    assert {"oqmd_formation_energy [eV/atom]", "mp_energy_above_hull [eV/atom]"} <= set(recipes.columns)
    assert len(recipes) == 3 and recipes["constraints_ok"].all()

    page.goto(url + "/checkpoints")
    wait_for_app(page)
    expect(page.get_by_text("read-only").first).to_be_visible()
    expect(page.get_by_text("No run of this workspace to delete")).to_be_visible()
    screenshot(page, "foundation_checkpoints")

    page.goto(url + "/train")
    wait_for_app(page)
    expect(page.get_by_role("radio", name="foundation")).to_be_checked()
    expect(page.get_by_text(f"foundation ({LABEL})").first).to_be_visible()
    assert not page.get_by_test_id("stException").count()
    assert not any((workspace / "runs").glob("*"))  # nothing was trained or copied into the workspace
