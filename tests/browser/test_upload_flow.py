"""Uploading a semicolon-separated, decimal-comma CSV (cp1252) on the Data page in a real browser: the page says how
it was read, suggests the numeric target, lists every row not used with its reason (downloadable), and the added
task is still there after a reload (saved in the workspace)."""

import pandas as pd
from playwright.sync_api import expect

from tests.browser.conftest import CEILING_MS, screenshot, wait_for_app

GAPS = (
    "sample_id;Formula;Eg (eV);T (°C)\n"
    "S-001;Fe2O3;2,1;25\n"
    "S-002;NaCl;;25\n"
    "S-003;Xx2O3;3,0;25\n"
    "S-004;TiO2;n/a;25\n"
    "S-005;Fe4O6;2,3;25\n"
    "S-006;Al2O3;8,8;25\n"
    "S-007;ZnO;3,37;25\n"
)


def test_upload_a_semicolon_csv_add_the_task_and_find_it_after_a_reload(app, page, tmp_path):
    url, workspace = app
    source = tmp_path / "gaps.csv"
    source.write_bytes(GAPS.encode("cp1252"))
    page.goto(url + "/data")
    wait_for_app(page)
    page.locator("input[type='file']").set_input_files(str(source))
    wait_for_app(page)
    expect(page.get_by_text("read as: semicolon-separated, decimal comma, cp1252").first).to_be_visible(
        timeout=CEILING_MS
    )
    expect(page.get_by_role("combobox", name="Target column")).to_have_value("Eg (eV)")  # numeric, not sample_id
    expect(page.get_by_text("3 of 7 rows used; 4 not used")).to_be_visible()
    expect(page.get_by_text("missing target").first).to_be_attached()  # cells of the rows-not-used table
    expect(page.get_by_text("duplicate composition").first).to_be_attached()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the rows not used (CSV)").click()
    saved = tmp_path / "unused.csv"
    download.value.save_as(saved)
    unused = pd.read_csv(saved)
    assert list(unused["row"]) == [3, 4, 5, 6]
    assert list(unused["input"]) == ["NaCl", "Xx2O3", "TiO2", "Fe4O6"]

    name = page.get_by_label("Task name", exact=True)
    name.fill("gap")
    name.press("Tab")
    wait_for_app(page)
    unit = page.get_by_label("Unit of the target", exact=True)
    unit.fill("eV")
    unit.press("Tab")
    wait_for_app(page)
    page.get_by_role("button", name="Add task").click()
    wait_for_app(page)
    expect(page.get_by_text("Added task 'gap', saved in your workspace")).to_be_visible(timeout=CEILING_MS)
    screenshot(page, "data_upload")
    assert list((workspace / "saved_uploads").glob("gap-*/task.json"))

    page.reload()
    wait_for_app(page)
    expect(page.get_by_role("button", name="Remove task")).to_be_visible(timeout=CEILING_MS)
    page.goto(url + "/train")
    wait_for_app(page)
    expect(page.get_by_text("gap (eV)").first).to_be_visible(timeout=CEILING_MS)  # the Train page's task list
    assert not page.get_by_test_id("stException").count()
