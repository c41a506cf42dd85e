"""How far a composition is from the compositions a model was trained on (its applicability domain).

The distance between two compositions is ``0.5 * sum |w_a - w_b|`` over atomic fractions: the fraction
of atoms that differ (0 = identical, 1 = no element in common). A task's *training domain* is the set of
training-split compositions labelled for that task; its ``tested_up_to`` is the largest distance of a
test composition from it, i.e. how far from the training data the task's test metrics were measured.
A prediction further away than that is an extrapolation the model card's errors do not cover.

A checkpoint without ``compositions.csv`` (copied without it, or written by hand) has no recorded
training data: predictions and designs still come out, without distance columns, and one warning says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fm_engine.checkpoints import COMPOSITIONS_FILE, TASKS_SEPARATOR, LoadedCheckpoint, read_compositions
from fm_engine.compositions import parse_many
from fm_engine.elements import n_elements


@dataclass(frozen=True)
class TrainingDomain:
    """Training compositions of one task (or of every task) and how far out its test set reached."""

    keys: tuple[str, ...]
    weights: np.ndarray  # (N, 94) atomic fractions
    tested_up_to: float  # largest test-composition distance; NaN without test compositions
    task: str | None  # None: every task's compositions (also for checkpoints without the per-task record)


def nearest(weights: np.ndarray, reference: np.ndarray, *, chunk_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest ``reference`` row for each row of ``weights`` and the distance to it (0..1)."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float32))
    if len(reference) == 0 or len(weights) == 0:
        return np.full(len(weights), -1), np.full(len(weights), np.nan)
    table = torch.as_tensor(np.asarray(reference, dtype=np.float32))
    index, distance = [], []
    for start in range(0, len(weights), chunk_size):
        block = torch.as_tensor(weights[start : start + chunk_size])
        best = torch.cdist(block, table, p=1).min(dim=1)
        index.append(best.indices.numpy())
        distance.append(0.5 * best.values.numpy())
    # float32 sums: rounded to the 6 decimals of the canonical keys, so 0.000999994 reads 0.001
    return np.concatenate(index), np.clip(np.round(np.concatenate(distance).astype(np.float64), 6), 0.0, 1.0)


def has_training_record(checkpoint: LoadedCheckpoint) -> bool:
    """Whether the checkpoint records its training compositions; warns once per checkpoint if not."""
    return _has_record(str(checkpoint.path), checkpoint.checkpoint_id)


@lru_cache(maxsize=32)
def _has_record(checkpoint_dir: str, checkpoint_id: str) -> bool:
    path = Path(checkpoint_dir) / COMPOSITIONS_FILE
    if not path.is_file():
        problem = f"has no {COMPOSITIONS_FILE} (the training compositions are not recorded)"
    else:
        try:
            columns = set(pd.read_csv(path, nrows=0).columns)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
            columns, problem = set(), f"has an unreadable {COMPOSITIONS_FILE} ({error})"
        else:
            missing = [c for c in ("composition", "split") if c not in columns]
            if not missing:
                return True
            problem = f"has a {COMPOSITIONS_FILE} without the column(s) {', '.join(missing)}"
    warnings.warn(
        f"{checkpoint_dir} {problem}: no distance to the training data and no extrapolation flags are given",
        stacklevel=3,
    )
    return False


def training_domain(checkpoint: LoadedCheckpoint, task: str | None = None) -> TrainingDomain:
    """The training compositions labelled for ``task`` (None: any task). For checkpoints written before
    the per-task record (no ``tasks`` column in compositions.csv) this is every task's (``task`` None);
    without compositions.csv it is empty (no keys, ``tested_up_to`` NaN)."""
    if not has_training_record(checkpoint):
        return TrainingDomain(keys=(), weights=np.zeros((0, n_elements())), tested_up_to=np.nan, task=None)
    return _domain(str(checkpoint.path), checkpoint.checkpoint_id, task)


@lru_cache(maxsize=32)
def _domain(checkpoint_dir: str, checkpoint_id: str, task: str | None) -> TrainingDomain:
    table = read_compositions(Path(checkpoint_dir))
    if "tasks" not in table.columns:
        task = None
    if task is not None:
        labelled = table["tasks"].astype(str).str.split(TASKS_SEPARATOR).map(lambda names: task in names)
        table = table.loc[labelled.astype(bool)]
    train_keys = table.loc[table["split"] == "train", "composition"].tolist()
    test_keys = table.loc[table["split"] == "test", "composition"].tolist()
    train = parse_many(train_keys).weights if train_keys else np.zeros((0, n_elements()))
    reach = tested_reach(train, parse_many(test_keys).weights if test_keys else np.zeros((0, n_elements())))
    return TrainingDomain(
        keys=tuple(train_keys), weights=train, tested_up_to=reach["max"] if reach else np.nan, task=task
    )


def tested_reach(train: np.ndarray, test: np.ndarray) -> dict[str, float] | None:
    """Median and max distance of the ``test`` weight rows from the nearest ``train`` row: how far from
    the training data the test metrics reach. None without both."""
    if not len(train) or not len(test):
        return None
    distance = nearest(test, train)[1]
    return {"median": float(np.median(distance)), "max": float(distance.max())}


def distance_column(task: str | None) -> str:
    """``<task>_distance_to_training``; ``distance_to_training`` for every task's compositions."""
    return f"{task}_distance_to_training" if task else "distance_to_training"


def is_beyond_tested(distance: float | np.ndarray, tested_up_to: float) -> bool | np.ndarray:
    """True where ``distance`` exceeds ``tested_up_to`` (float32 distances: a 1e-6 tolerance)."""
    return np.asarray(distance) > tested_up_to + 1e-6


def distance_columns(
    checkpoint: LoadedCheckpoint,
    weights: np.ndarray,
    *,
    rows: np.ndarray,
    n_rows: int,
    tasks: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Table columns for weight rows placed at ``rows`` of a table of ``n_rows`` (other rows NaN / ""):
    ``<task>_distance_to_training`` for each of ``tasks`` (default: every task; one search per distinct
    training set) and ``extrapolated_for`` (comma-separated tasks for which the row lies beyond every
    test composition of the task). Checkpoints without the per-task record get one
    ``distance_to_training`` column and no ``extrapolated_for``; checkpoints without compositions.csv no
    columns at all (and one warning)."""
    if not has_training_record(checkpoint):
        return {}
    searched: dict[tuple[str, ...], np.ndarray] = {}
    columns: dict[str, np.ndarray] = {}
    flagged: list[list[str]] = [[] for _ in range(n_rows)]
    per_task = False
    for task in tasks if tasks is not None else checkpoint.model.tasks:
        domain = training_domain(checkpoint, task)
        if domain.keys not in searched:
            searched[domain.keys] = nearest(weights, domain.weights)[1]
        distance = searched[domain.keys]
        columns.setdefault(distance_column(domain.task), np.full(n_rows, np.nan))[rows] = distance
        if domain.task is not None:
            per_task = True
            for row in np.asarray(rows)[is_beyond_tested(distance, domain.tested_up_to)]:
                flagged[row].append(task)
    if per_task:
        columns["extrapolated_for"] = np.array([", ".join(tasks) for tasks in flagged], dtype=object)
    return columns


def beyond_tested(checkpoint: LoadedCheckpoint, predictions: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """Per task: (number of rows whose ``extrapolated_for`` names it, the task's ``tested_up_to``), from
    a table with the columns of :func:`distance_columns`; tasks without such rows are left out."""
    if "extrapolated_for" not in predictions.columns:
        return {}
    names = predictions["extrapolated_for"].astype(str).str.split(", ").explode()
    counts = names[names != ""].value_counts()
    return {
        task: (int(counts[task]), training_domain(checkpoint, task).tested_up_to)
        for task in checkpoint.model.tasks
        if task in counts
    }
