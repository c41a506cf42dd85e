import numpy as np
import pandas as pd
import pytest

from fm_engine.data import load_task_table, read_table
from fm_engine.tasks import TaskSpec


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_regression_table_reports_bad_rows_by_file_and_line(tmp_path):
    write(tmp_path, "gap.csv", "formula,gap\nFe2O3,2.1\nNaCl,8.5\nnot_a_formula!,1\nXx2,3\nTiO2,\nFe4O6,2.3\n")
    task = TaskSpec(name="gap", data_files=["gap.csv"], composition_column="formula", data_column="gap")
    with pytest.warns(UserWarning):
        table = load_task_table(task, base_dir=tmp_path)
    assert table.keys == ["Fe0.4O0.6", "Cl0.5Na0.5"]  # TiO2 has no target (masked), Fe4O6 is a duplicate
    np.testing.assert_allclose(table.values, [2.1, 8.5])
    assert table.n_duplicates == 1
    assert list(table.bad_rows["row"]) == [4, 5]
    assert list(table.bad_rows["file"]) == ["gap.csv", "gap.csv"]
    assert "unknown element 'Xx'" in table.bad_rows["reason"].iloc[1]


def test_several_files_are_concatenated(tmp_path):
    write(tmp_path, "a.csv", "composition,y\nFe,1\n")
    write(tmp_path, "b.csv", "composition,y\nNi,2\n")
    pd.DataFrame({"composition": ["Co"], "y": [3.0]}).to_parquet(tmp_path / "c.parquet")
    task = TaskSpec(name="y", data_files=["a.csv", "b.csv", "c.parquet"])
    assert load_task_table(task, base_dir=tmp_path).keys == ["Fe1", "Ni1", "Co1"]


def test_vector_targets_from_list_cells(tmp_path):
    write(tmp_path, "v.csv", 'composition,v\nFe,"[1, 2, 3]"\nNi,"[4.5, 5, 6]"\n')
    table = load_task_table(TaskSpec(name="v", data_files=["v.csv"]), base_dir=tmp_path)
    assert table.values.shape == (2, 3)


def test_list_cells_are_parsed_safely(tmp_path):
    write(tmp_path, "v.csv", "composition,v\nFe,\"[1, 2]\"\nNi,\"__import__('os').system('echo hacked')\"\n")
    with pytest.warns(UserWarning):
        table = load_task_table(TaskSpec(name="v", data_files=["v.csv"]), base_dir=tmp_path)
    assert table.keys == ["Fe1"]
    assert "not a number" in table.bad_rows["reason"].iloc[0]


def test_classification_labels_by_name_or_index(tmp_path):
    write(tmp_path, "c.csv", "composition,phase\nFe,BCC\nNi,FCC\nCo,2\nCu,LIQUID\n")
    task = TaskSpec(name="phase", type="classification", data_files=["c.csv"], classes=["BCC", "FCC", "HCP"])
    with pytest.warns(UserWarning):
        table = load_task_table(task, base_dir=tmp_path)
    assert list(table.values) == [0, 1, 2]
    assert "unknown class 'LIQUID'" in table.bad_rows["reason"].iloc[0]
    inferred = load_task_table(TaskSpec(name="phase", type="classification", data_files=["c.csv"]), base_dir=tmp_path)
    assert inferred.classes == ["2", "BCC", "FCC", "LIQUID"]


def test_curves_from_long_format_and_list_cells_agree(tmp_path):
    write(tmp_path, "long.csv", "composition,T,cp\nFe,500,30\nFe,300,25\nNi,300,26\nFe,400,28\n")
    write(tmp_path, "wide.csv", 'composition,T,cp\nFe,"[300, 400, 500]","[25, 28, 30]"\nNi,[300],[26]\n')
    tables = [
        load_task_table(
            TaskSpec(name="cp", type="kernel_regression", data_files=[f], data_column="cp", t_column="T"),
            base_dir=tmp_path,
        )
        for f in ("long.csv", "wide.csv")
    ]
    for table in tables:
        assert table.keys == ["Fe1", "Ni1"]
        np.testing.assert_array_equal(table.t[0], [300, 400, 500])  # sorted by t
        np.testing.assert_array_equal(table.values[0], [25, 28, 30])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("composition,y\n", "the table has no rows"),
        ('composition,y\nFe,1\nNi,"2,3\n', "malformed CSV"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, content, message):
    write(tmp_path, "bad.csv", content)
    with pytest.raises(ValueError, match=message):
        read_table(tmp_path / "bad.csv")


def test_missing_file_and_column(tmp_path):
    with pytest.raises(ValueError, match="data file not found"):
        load_task_table(TaskSpec(name="y", data_files=["nope.csv"]), base_dir=tmp_path)
    write(tmp_path, "a.csv", "formula,y\nFe,1\n")
    with pytest.raises(ValueError, match="column 'composition' not found \\(columns: formula, y\\)"):
        load_task_table(TaskSpec(name="y", data_files=["a.csv"]), base_dir=tmp_path)


def test_all_rows_bad_is_an_error(tmp_path):
    write(tmp_path, "a.csv", "composition,y\nQq,1\n")
    with pytest.raises(ValueError, match="no usable rows"), pytest.warns(UserWarning):
        load_task_table(TaskSpec(name="y", data_files=["a.csv"]), base_dir=tmp_path)


def test_task_spec_validation():
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        TaskSpec.from_dict({"name": "a", "colour": "red"})
    with pytest.raises(ValueError, match="unknown task type"):
        TaskSpec(name="a", type="ranking")
    with pytest.raises(ValueError, match="needs a t_column"):
        TaskSpec(name="a", type="kernel_regression")
    with pytest.raises(ValueError, match="task_masking_ratio"):
        TaskSpec(name="a", task_masking_ratio=1.5)
    spec = TaskSpec.from_dict({"name": "gap", "type": "Regression", "data_files": "gaps.csv"})
    assert spec.data_files == ["gaps.csv"] and spec.data_column == "gap"


def test_a_semicolon_task_file_with_decimal_commas_reads_as_fm_train_reads_it(tmp_path):
    (tmp_path / "gap.csv").write_bytes("Formula;Eg (eV)\nFe2O3;2,1\nNaCl;8,5\n".encode("utf-8-sig"))
    task = TaskSpec(name="gap", data_files=["gap.csv"], composition_column="Formula", data_column="Eg (eV)")
    table = load_task_table(task, base_dir=tmp_path)
    np.testing.assert_allclose(table.values, [2.1, 8.5])


def test_every_unused_row_is_listed_with_its_reason(tmp_path):
    write(tmp_path, "y.csv", "formula,y\nFe2O3,1\nNiO,\nXx,2\nCoO,n/a\nFe4O6,3\nAl,-\nAl,NA\nAl,4\nCuO,soft\n")
    with pytest.warns(UserWarning):
        table = load_task_table(
            TaskSpec(name="y", data_files=["y.csv"], composition_column="formula"), base_dir=tmp_path
        )
    unused = table.unused_rows()
    assert list(unused["row"]) == [3, 4, 5, 6, 7, 8, 10]
    reasons = dict(zip(unused["row"], unused["reason"], strict=True))
    assert all(reasons[row].startswith("missing target") for row in (3, 5, 7, 8))
    assert "unknown element 'Xx'" in reasons[4] and "not a number" in reasons[10]
    assert reasons[6] == "duplicate composition (Fe0.4O0.6): the value of row 2 is used"
    assert len(table) + len(unused) == 9  # every row of the file is used or listed
