"""The random-forest baseline of the bench scripts: scikit-learn forests on our descriptor or on composition
statistics (the fraction-weighted mean, variance, max and min of the 58 element properties, 232 dims: the
Magpie-style baseline of the matbench leaderboards, on our element table rather than Magpie's)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from fm_engine.descriptors import Descriptor, DescriptorSpec
from fm_engine.tasks import TaskType

N_ESTIMATORS = 200
N_JOBS = 2
RANDOM_STATE = 0


def parse_max_features(value: str) -> str | float:
    if value in ("sqrt", "log2"):
        return value
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError("--max-features: sqrt, log2 or a fraction in (0, 1]")
    return number


def composition_statistics(weights: np.ndarray) -> np.ndarray:
    """(n, 232) float32 composition statistics of atomic-fraction weight vectors (n, 94)."""
    return Descriptor(DescriptorSpec(kind="stats")).transform(weights).astype(np.float32)


def make_forest(task_type: TaskType, *, max_features: str | float = "sqrt", class_weight: str | None = None) -> Any:
    """An unfitted forest: ``N_ESTIMATORS`` trees, ``N_JOBS`` jobs, ``RANDOM_STATE``; ``class_weight``
    (``"balanced"`` or None) for classification only."""
    common: dict[str, Any] = {
        "n_estimators": N_ESTIMATORS,
        "n_jobs": N_JOBS,
        "random_state": RANDOM_STATE,
        "max_features": max_features,
    }
    if task_type is TaskType.CLASSIFICATION:
        return RandomForestClassifier(**common, class_weight=class_weight)
    return RandomForestRegressor(**common)


def class_probabilities(forest: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities; classes missing from the training rows stay 0."""
    predicted = np.zeros((len(x), n_classes))
    predicted[:, forest.classes_] = forest.predict_proba(x)
    return predicted
