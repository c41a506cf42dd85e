"""The Data page: element coverage heatmap and mapping an uploaded table to a task."""

import pandas as pd
import pytest

from tests.workbench.conftest import open_page
from workbench.components import task_upload as page
from workbench.components.uploads import read_csv_bytes, read_upload
from workbench.saved_uploads import add_upload

UPLOADED_TASKS = "fm_uploaded_tasks"

MY_DATA = pd.DataFrame(
    {
        "formula": ["Fe2O3", "Xx2O3", "Al2O3", "NaCl", "TiO2", "SiO2", "MgO"],
        "hardness": [5.5, 3.0, 9.0, 2.5, 6.0, 7.0, "soft"],
        "split": ["train", "train", "test", "val", "train", "train", "train"],
    }
)


def test_element_coverage():
    coverage = page.element_coverage(["Fe2O3", "Fe4O6", "Al2O3", "NaCl", "bad formula"])
    assert coverage == pytest.approx({"O": 2 / 3, "Fe": 1 / 3, "Al": 1 / 3, "Na": 1 / 3, "Cl": 1 / 3})
    assert page.element_coverage(["Xx"]) == {}


def test_browser_shows_the_coverage_heatmap(workspace):
    at = open_page("data")
    assert at.selectbox[0].label == "Dataset" and at.selectbox[1].label == "Task"
    heatmaps = [c.proto.spec for c in at.get("plotly_chart") if "share of compositions" in c.proto.spec]
    assert heatmaps
    assert '"Fe: ' in heatmaps[0] and '"O: ' in heatmaps[0]  # hover texts carry the shares
    assert any(h.value == "Upload your own data" for h in at.header)
    how = [c.value for c in at.caption if c.value.startswith("How to read this:")]
    assert len(how) == 2 and "share of this task's compositions" in how[1]  # the distribution and the heatmap


def test_mapping_validates_and_lists_bad_rows_then_adds_the_task(workspace):
    at = open_page("data", fm_data_upload={"name": "my hardness.csv", "frame": MY_DATA})
    assert at.text_input(key="upload_task_name").value == "my_hardness"
    assert at.selectbox(key="upload_composition").value == "formula"
    assert at.selectbox(key="upload_split").value == "split"
    at.text_input(key="upload_task_name").set_value("hardness").run()
    at.selectbox(key="upload_target").select("hardness").run()
    at.text_input(key="upload_unit").set_value("GPa").run()
    assert not at.exception
    bad = next(frame.value for frame in at.dataframe if "reason" in frame.value.columns)
    assert list(bad["row"]) == [3, 8]  # lines in the file (header = 1)
    assert "unknown element 'Xx'" in bad["reason"].iloc[0]
    assert "not a finite number" in bad["reason"].iloc[1] or "soft" in bad["reason"].iloc[1]
    assert any("compositions: 5" in s.value for s in at.success)
    at.button(key="upload_add").click().run()
    assert not at.exception
    stored = at.session_state[UPLOADED_TASKS]["hardness"]
    assert stored["spec"]["unit"] == "GPa" and stored["spec"]["data_column"] == "hardness"
    assert stored["spec"]["composition_column"] == "formula" and stored["spec"]["split_column"] == "split"
    assert stored["frame"].equals(MY_DATA)
    listed = next(frame.value for frame in at.dataframe if "target column" in frame.value.columns)
    assert list(listed["task"]) == ["hardness"]


def test_mapping_errors_are_messages_not_tracebacks(workspace):
    at = open_page("data", fm_data_upload={"name": "mine.csv", "frame": MY_DATA})
    at.selectbox(key="upload_type").select("kernel_regression").run()
    assert not at.exception
    assert any("needs a t_column" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "upload_add"]
    at.selectbox(key="upload_type").select("classification").run()
    at.selectbox(key="upload_target").select("split").run()
    assert not at.exception
    assert [b for b in at.button if b.key == "upload_add"]  # three classes: train / test / val


def test_validate_mapping_functions(workspace):
    all_bad = pd.DataFrame({"formula": ["Xx", "Qq2"], "y": [1.0, 2.0]})
    result = page.validate_mapping(
        all_bad, name="y", task_type="regression", composition_column="formula", target_column="y"
    )
    assert not result.ok and "no usable rows" in result.error
    assert list(result.unused_rows["row"]) == [2, 3]
    curves = pd.DataFrame({"formula": ["Fe", "Fe", "Ni", "Ni"], "T": [300, 600, 300, 600], "cp": [1, 2, 3, 4]})
    result = page.validate_mapping(
        curves, name="cp", task_type="kernel_regression", composition_column="formula", target_column="cp",
        t_column="T", unit="J/(mol K)", t_unit="K",
    )  # fmt: skip
    assert result.ok and page.table_summary(result.table)["points"] == 4
    store = {}
    assert not add_upload(store, UPLOADED_TASKS, "cp", {"spec": result.spec.to_dict(), "frame": curves})
    assert add_upload(store, UPLOADED_TASKS, "cp", {"spec": result.spec.to_dict(), "frame": curves})
    assert store[UPLOADED_TASKS]["cp"]["spec"]["t_column"] == "T"


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", "empty"), (b"formula,y\n", "no rows"), (b'formula,y\n"Fe,1\n', "Malformed CSV")],
)
def test_bad_uploads_give_a_message(data, expected):
    frame, message = read_csv_bytes(data)
    assert frame is None and expected in message
    frame, message = read_csv_bytes(b"formula,y\nFe2O3,1\n")
    assert message == "" and list(frame.columns) == ["formula", "y"]


SEMICOLON_CP1252 = (
    "sample_id;Formula;Eg (eV);T (°C)\n"
    "S-001;Fe2O3;2,1;25\n"
    "S-002;NaCl;;25\n"  # row 3: empty target
    "S-003;Xx2O3;3,0;25\n"  # row 4: bad formula
    "S-004;TiO2;n/a;25\n"  # row 5
    "S-005;SiO2;NA;25\n"  # row 6
    "S-006;MgO;-;25\n"  # row 7
    "S-007;Fe4O6;2,3;25\n"  # row 8: the same composition as row 2
    "S-008;Al2O3;8,8;25\n"
).encode("cp1252")


def upload_session(data: bytes, name: str = "gaps.csv") -> dict:
    frame, message, found = read_upload(data)
    assert message == ""
    return {"name": name, "frame": frame, "read_as": found.describe()}


def test_a_semicolon_decimal_comma_upload_is_read_and_every_unused_row_listed(workspace):
    at = open_page("data", fm_data_upload=upload_session(SEMICOLON_CP1252))
    assert any("read as: semicolon-separated, decimal comma, cp1252" in m.value for m in at.markdown)
    assert at.selectbox(key="upload_composition").value == "Formula"
    assert at.selectbox(key="upload_target").value == "Eg (eV)"  # numeric, not sample_id (the first column)
    assert any("2 of 8 rows used; 6 not used" in m.value for m in at.markdown)
    unused = next(frame.value for frame in at.dataframe if "reason" in frame.value.columns)
    assert list(unused["row"]) == [3, 4, 5, 6, 7, 8]
    assert "unknown element 'Xx'" in unused["reason"].iloc[1]
    assert all(unused["reason"].iloc[i].startswith("missing target") for i in (0, 2, 3, 4))
    assert unused["reason"].iloc[5] == "duplicate composition (Fe0.4O0.6): the value of row 2 is used"
    assert [b for b in at.get("download_button") if "rows not used" in b.proto.label]
    assert any("compositions: 2" in s.value for s in at.success)


def test_a_non_numeric_target_says_so_with_an_example(workspace):
    at = open_page("data", fm_data_upload=upload_session(SEMICOLON_CP1252))
    at.selectbox(key="upload_target").select("sample_id").run()
    assert not at.exception
    (error,) = at.error
    assert "'sample_id' is not numeric: row 2 holds 'S-001'" in error.value
    assert "no usable rows" not in error.value
    assert not [b for b in at.button if b.key == "upload_add"]


def test_numeric_ids_are_never_suggested_as_the_target():
    frame = pd.DataFrame({"No": [1, 2], "formula": ["Fe", "Ni"], "label": ["a", "b"], "hardness": [5.0, 6.0]})
    columns = ["No", "label", "hardness"]
    assert columns[page.suggest_target(frame, columns, task_type="regression")] == "hardness"
    assert columns[page.suggest_target(frame, columns, task_type="classification")] == "label"


def test_an_added_task_is_saved_and_restored_in_a_new_session_then_removed(workspace):
    at = open_page("data", fm_data_upload=upload_session(SEMICOLON_CP1252))
    at.text_input(key="upload_task_name").set_value("gap").run()
    at.text_input(key="upload_unit").set_value("eV").run()
    at.button(key="upload_add").click().run()
    assert not at.exception and "saved in your workspace" in at.success[-1].value
    (folder,) = (workspace / "saved_uploads").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["table.csv", "task.json"]

    later = open_page("train")  # a reload: a new session on the same workspace
    assert later.checkbox(key="train_upload_gap").label == "gap (eV)"
    restored = later.session_state[UPLOADED_TASKS]["gap"]
    assert restored["spec"]["data_column"] == "Eg (eV)" and restored["frame"]["Eg (eV)"].iloc[0] == 2.1
    assert restored["frame"]["T (°C)"].tolist() == [25] * 8

    again = open_page("data")
    listed = next(frame.value for frame in again.dataframe if "target column" in frame.value.columns)
    assert list(listed["task"]) == ["gap"]
    again.button(key="uploaded_remove").click().run()
    assert not (workspace / "saved_uploads" / folder.name).exists()
    assert not open_page("train").session_state[UPLOADED_TASKS]
