"""The Data page: element coverage heatmap and mapping an uploaded table to a task."""

import pandas as pd
import pytest

from tests.workbench.conftest import open_page
from workbench.components import task_upload as page
from workbench.components.uploads import read_csv_bytes
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
