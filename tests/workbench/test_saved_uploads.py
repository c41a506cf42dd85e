"""Uploaded tasks saved in the workspace: JSON + CSV only, restored once per session, bad folders skipped."""

import pickle

import pandas as pd
import pytest

from tests.workbench.conftest import open_page
from workbench.saved_uploads import (
    PROBLEMS,
    load_saved_uploads,
    save_upload,
    upload_folder,
    uploaded_tasks,
)

SPEC = {"name": "gap", "type": "regression", "composition_column": "formula", "data_column": "gap", "unit": "eV"}
FRAME = pd.DataFrame({"formula": ["Fe2O3", "NaCl"], "gap": [2.1, None], "note": ["a;b", "Å"]})
KEY = "fm_uploaded_tasks"


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_saved_task_round_trips(workspace):
    save_upload("gap", SPEC, FRAME, source="gaps.csv", read_as="semicolon-separated, decimal comma, UTF-8")
    save_upload("band gap", {**SPEC, "name": "band gap"}, FRAME)
    assert upload_folder("band gap") != upload_folder("band-gap")
    tasks, problems = load_saved_uploads()
    assert problems == [] and list(tasks) == ["gap", "band gap"]
    pd.testing.assert_frame_equal(tasks["gap"]["frame"], FRAME)
    assert tasks["gap"]["spec"]["unit"] == "eV" and tasks["gap"]["source"] == "gaps.csv"
    store = {}
    assert list(uploaded_tasks(store, KEY)) == ["gap", "band gap"] and store[PROBLEMS] == []
    store[KEY] = {}
    assert uploaded_tasks(store, KEY) == {}  # read from the workspace once per session, not on every call


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / "task.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "task.json").write_text('{"name": "gap", "spec": {"name": "gap", "colour": 1}}'), "colour"),
        (lambda f: (f / "table.csv").unlink(), "table.csv"),
        (lambda f: (f / "table.csv").write_text("x,y\n1,2\n"), "no column 'formula', 'gap'"),
        (lambda f: (f / "task.json").unlink(), "no task.json"),
    ],
    ids=["json", "spec", "no-table", "columns", "no-task"],
)
def test_a_corrupt_saved_upload_is_skipped_with_a_message_naming_its_folder(workspace, damage, reason):
    save_upload("good", {**SPEC, "name": "good"}, FRAME)
    damage(save_upload("gap", SPEC, FRAME))
    tasks, problems = load_saved_uploads()
    assert list(tasks) == ["good"]
    (problem,) = problems
    assert str(upload_folder("gap")) in problem and reason in problem
    at = open_page("data")  # the page shows the message, not a traceback
    assert any(str(upload_folder("gap")) in w.value for w in at.warning)


def test_a_pickle_in_a_saved_upload_is_never_unpickled(workspace, tmp_path):
    marker = tmp_path / "unpickled"
    folder = save_upload("gap", SPEC, FRAME)
    (folder / "table.csv").write_bytes(pickle.dumps(Payload(marker)))
    (folder / "table.pkl").write_bytes(pickle.dumps(Payload(marker)))
    tasks, problems = load_saved_uploads()
    assert tasks == {} and len(problems) == 1 and not marker.exists()
