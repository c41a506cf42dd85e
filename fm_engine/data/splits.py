"""One composition-level train/val/test split for all tasks, and per-task training subsampling."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fm_engine.config import DEFAULT_SEED
from fm_engine.data.recipe import VAL_RATIO
from fm_engine.data.settings import DataSection

_PRECEDENCE = {"train": 0, "val": 1, "test": 2}


SPLIT_NAMES = ("train", "val", "test")


def overlay_split_labels(per_task: Sequence[Mapping[str, str | None]]) -> dict[str, str]:
    """Overlay the files' split labels per composition key: test > val > train; conflicts warned once."""
    merged: dict[str, str] = {}
    conflicts = 0
    for labels in per_task:
        for key, label in labels.items():
            if label is None:
                continue
            current = merged.get(key)
            if current is None:
                merged[key] = label
            elif current != label:
                conflicts += 1
                if _PRECEDENCE[label] > _PRECEDENCE[current]:
                    merged[key] = label
    if conflicts:
        warnings.warn(
            f"{conflicts} composition(s) have conflicting split labels across files; "
            "kept the stricter one (test > val > train)",
            stacklevel=2,
        )
    return merged


@dataclass(frozen=True)
class MultiTaskSplitter:
    """Seeded random split that places rare tasks first.

    Compositions are grouped into chunks: all compositions of the rarest task first, then the next rarest
    among those left, ... then the rest. Each chunk is shuffled and val/test counts are allocated with
    cumulative rounding, so every task, however rare, gets its share of val and test compositions while
    the global proportions hold.
    """

    val_ratio: float = VAL_RATIO
    test_ratio: float = DataSection.test_ratio
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.val_ratio < 0 or self.test_ratio < 0 or self.val_ratio + self.test_ratio >= 1:
            raise ValueError("val_ratio and test_ratio must be >= 0 and sum to less than 1")

    def split(self, keys: Sequence[str], availability: np.ndarray) -> np.ndarray:
        """Labels 'train' / 'val' / 'test' for ``keys``; ``availability`` is (n_keys, n_tasks) bool."""
        n = len(keys)
        labels = np.full(n, "train", dtype=object)
        if n == 0:
            return labels
        availability = np.asarray(availability, dtype=bool).reshape(n, -1)
        rng = np.random.default_rng(self.seed)
        # Deterministic whatever the input order: work on keys sorted alphabetically.
        order = np.argsort(np.asarray(keys, dtype=object), kind="stable")
        unassigned = np.ones(n, dtype=bool)
        chunks: list[np.ndarray] = []
        for task in np.argsort(availability.sum(axis=0), kind="stable"):
            members = order[availability[order, task] & unassigned[order]]
            if len(members):
                chunks.append(members)
                unassigned[members] = False
        rest = order[unassigned[order]]
        if len(rest):
            chunks.append(rest)
        done = n_val = n_test = 0
        for chunk in chunks:
            chunk = chunk[rng.permutation(len(chunk))]
            done += len(chunk)
            chunk_test = round(done * self.test_ratio) - n_test
            chunk_val = round(done * self.val_ratio) - n_val
            labels[chunk[:chunk_test]] = "test"
            labels[chunk[chunk_test : chunk_test + chunk_val]] = "val"
            n_test += chunk_test
            n_val += chunk_val
        return labels


def resolve_splits(
    keys: Sequence[str],
    availability: np.ndarray,
    file_labels: Mapping[str, str],
    *,
    val_ratio: float = VAL_RATIO,
    test_ratio: float = DataSection.test_ratio,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """File labels where given, the :class:`MultiTaskSplitter` for the rest."""
    labels = np.array([file_labels.get(key, "") for key in keys], dtype=object)
    free = np.flatnonzero(labels == "")
    splitter = MultiTaskSplitter(val_ratio=val_ratio, test_ratio=test_ratio, seed=seed)
    labels[free] = splitter.split([keys[i] for i in free], np.asarray(availability)[free])
    return labels


def sample_per_task_and_split(
    frame: pd.DataFrame,
    names: Sequence[str],
    *,
    rows: int,
    seed: int,
    tag: str,
    usable: np.ndarray | None = None,
) -> pd.DataFrame:
    """A seeded sample of a corpus-format ``frame`` (columns ``split`` and one per task in ``names``): per task and
    per split (train / val / test), ``rows`` of its labelled ``usable`` rows (:func:`subsample_keep_mask`, seeded
    by ``<task>/<tag>/<split>``); the rows drawn for any task, in their order, each task's column NaN on the rows
    drawn only for others. Used for a fine-tune's replay and for the replay sample shipped with the foundation."""
    usable = np.ones(len(frame), dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    split = frame["split"].to_numpy()
    chosen = np.zeros(len(frame), dtype=bool)
    drawn = {}
    for name in names:
        labelled = frame[name].notna().to_numpy() & usable
        keep = np.zeros(len(frame), dtype=bool)
        for part in SPLIT_NAMES:
            valid = labelled & (split == part)
            ratio = min(1.0, rows / max(int(valid.sum()), 1))
            keep |= subsample_keep_mask(valid, ratio, seed=seed, task=f"{name}/{tag}/{part}")
        drawn[name] = keep
        chosen |= keep
    sample = frame[chosen].copy()
    for name, keep in drawn.items():
        sample.loc[~keep[chosen], name] = np.nan
    return sample.reset_index(drop=True)


def subsample_keep_mask(valid: np.ndarray, ratio: float, *, seed: int, task: str) -> np.ndarray:
    """Keep ``round(n_valid * ratio)`` of the ``valid`` rows, chosen at random (seeded per task)."""
    valid = np.asarray(valid, dtype=bool)
    if ratio >= 1.0:
        return valid.copy()
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    positions = np.flatnonzero(valid)
    keep = np.zeros_like(valid)
    n_keep = round(len(positions) * ratio)
    keep[rng.choice(positions, size=n_keep, replace=False)] = True
    return keep
