"""A first visit in a real browser: the demo model trains from one click, then the pages work."""

from playwright.sync_api import expect

from tests.browser.conftest import screenshot, wait_for_app


def test_first_visit_trains_the_demo_model(app, page):
    url, workspace = app
    page.goto(url + "/")
    wait_for_app(page)
    expect(page.get_by_text("Start here: train the demo model")).to_be_visible()
    screenshot(page, "overview_first_visit")
    page.get_by_role("button", name="Train the demo model").click()
    expect(page.get_by_text("demo: running").or_(page.get_by_text("demo: queued"))).to_be_visible(timeout=30_000)
    screenshot(page, "overview_demo_training")
    expect(page.get_by_text("A model is ready")).to_be_visible(timeout=180_000)
    assert (workspace / "runs" / "demo" / "checkpoint" / "model.safetensors").exists()
    expect(page.get_by_text("Active checkpoint")).to_be_visible()
    screenshot(page, "overview_model_ready")
    page.goto(url + "/data")
    wait_for_app(page)
    expect(page.get_by_text("Bundled datasets").first).to_be_visible()
    screenshot(page, "data")
    assert not page.get_by_test_id("stException").count()
