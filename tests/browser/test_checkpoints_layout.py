"""The Checkpoints page in a 1280 px wide window: a card's test metrics and the comparison's verdict are read without
scrolling right (the data grids are no wider than the main column)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CEILING_MS, screenshot, serve, wait_for_app


@pytest.fixture
def two_runs(tmp_path: Path, tiny_run: Path) -> Iterator[tuple[str, Path]]:
    """A workbench on a workspace with the tiny run and a copy whose card doubles its errors."""
    workspace = tmp_path / "workspace"
    for name in ("tiny", "tiny2"):
        shutil.copytree(tiny_run, workspace / "runs" / name, ignore=shutil.ignore_patterns(".run.lock"))
    card_path = workspace / "runs" / "tiny2" / "checkpoint" / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    for task in card["tasks"]:
        for key in ("mae", "rmse"):
            if key in task["test_metrics"]:
                task["test_metrics"][key] *= 2
    card_path.write_text(json.dumps(card), encoding="utf-8")
    yield from serve(workspace)


def grid_widths(page: object, title: str) -> tuple[float, float]:
    """(scroll width, visible width) in px of the data grid right under the bold title ``title``."""
    table = (f"xpath=//div[@data-testid='stElementContainer'][.//strong[normalize-space()='{title}']]"
             "/following-sibling::div[1]//div[@data-testid='stDataFrame']")  # fmt: skip
    scroller = page.locator(table).first.locator(".dvn-scroller").first  # type: ignore[attr-defined]
    scroller.wait_for(timeout=CEILING_MS)
    return tuple(scroller.evaluate("e => [e.scrollWidth, e.clientWidth]"))


def test_metrics_and_verdict_fit_a_1280_px_window(browser, two_runs):
    url, _ = two_runs
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url + "/checkpoints")
    wait_for_app(page)
    verdict = page.get_by_text("test metrics.", exact=False).filter(has_text="Verdict:")
    expect(verdict).to_be_visible(timeout=CEILING_MS)
    box = verdict.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280
    for title in ("Test metrics", "Test metrics per task"):  # the card's, the comparison's
        scroll, visible = grid_widths(page, title)
        assert scroll <= visible + 1, f"{title}: {scroll} px of columns in a {visible} px grid"
    screenshot(page, "checkpoints_1280")
    context.close()
