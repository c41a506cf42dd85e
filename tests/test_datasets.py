import warnings

import numpy as np
import pytest

from fm_engine.data import CompositionDataModule, load_task_table
from fm_engine.datasets import bundled_datasets, bundled_task, bundled_tasks, dataset_overview
from fm_engine.tasks import TaskType

ALL_TASKS = sorted(bundled_tasks())


def test_catalog_has_the_promised_datasets_with_provenance():
    names = {dataset.name for dataset in bundled_datasets()}
    assert {"aflow", "glass", "hea_phase", "hea_yield_strength"} <= names
    for dataset in bundled_datasets():
        assert dataset.source and dataset.license and dataset.citation, dataset.name
    aflow = {task.name: task.unit for task in next(d for d in bundled_datasets() if d.name == "aflow").tasks}
    assert aflow == {
        "bulk_modulus": "GPa",
        "shear_modulus": "GPa",
        "debye_temperature": "K",
        "thermal_conductivity_300K": "W/(m K)",
        "thermal_expansion_300K": "1/K",
        "band_gap": "eV",
        "energy_per_atom": "eV/atom",
    }


@pytest.mark.parametrize("name", ALL_TASKS)
def test_every_bundled_row_parses_and_matches_the_catalog(name):
    task = bundled_task(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no bad rows, no duplicates in the shipped files
        table = load_task_table(task.spec())
    assert table.bad_rows.empty
    if task.type == "kernel_regression":
        assert sum(len(t) for t in table.t) == task.n_rows
        assert all(len(t) >= 3 for t in table.t)
        assert task.t_unit == "K"
    else:
        assert len(table) == task.n_rows
    if task.type == "classification":
        assert task.classes and len(task.classes) >= 2
        counts = np.bincount(table.values, minlength=len(task.classes))
        assert dict(zip(task.classes, counts.tolist(), strict=True)) == task.extra["class_counts"]
    else:
        assert task.unit, f"{name} has no unit"


def test_aflow_split_is_one_consistent_composition_split():
    tasks = [t.spec() for t in next(d for d in bundled_datasets() if d.name == "aflow").tasks]
    dm = CompositionDataModule(tasks)
    dm.setup()  # would warn about conflicting split labels if files disagreed
    counts = {stage: int((dm.split == stage).sum()) for stage in ("train", "val", "test")}
    assert counts["test"] / len(dm.keys) == pytest.approx(0.1, abs=0.01)
    assert counts["val"] / len(dm.keys) == pytest.approx(0.1, abs=0.01)


def test_all_bundled_tasks_join_in_one_datamodule():
    dm = CompositionDataModule([bundled_task(name).spec() for name in ALL_TASKS])
    dm.setup()
    summary = dm.summary().set_index("task")
    for name in ALL_TASKS:
        assert summary.loc[name, "test"] > 0 and summary.loc[name, "val"] > 0, name
    assert {t.type for t in dm.tasks} == set(TaskType)


def test_overview_table():
    overview = dataset_overview()
    assert set(overview["task"]) == set(ALL_TASKS)
    assert (overview["rows"] > 0).all()
