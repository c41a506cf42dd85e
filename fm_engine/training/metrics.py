"""Metrics in physical units: regression (MAE, RMSE, R2), classification (accuracy, macro-F1, ROC-AUC),
sequence tasks (curve RMSE over all points, MAE)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    error = y_pred - y_true
    ss_res = float((error**2).sum())
    ss_tot = float(((y_true - y_true.mean(axis=0)) ** 2).sum())
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
    }


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties averaged."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    _, first, counts = np.unique(score[order], return_index=True, return_counts=True)
    ranks = np.empty(len(score), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based ranks, averaged over ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """``proba`` (n, C) class probabilities; ROC-AUC is binary or macro one-vs-rest."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    f1s = []
    for c in range(n_classes):
        tp = int(((y_pred == c) & (y_true == c)).sum())
        fp = int(((y_pred == c) & (y_true != c)).sum())
        fn = int(((y_pred != c) & (y_true == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    if n_classes == 2:
        auc = _binary_auc(y_true == 1, proba[:, 1])
    else:
        aucs = [_binary_auc(y_true == c, proba[:, c]) for c in range(n_classes)]
        aucs = [a for a in aucs if not np.isnan(a)]
        auc = float(np.mean(aucs)) if aucs else float("nan")
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "roc_auc": auc,
    }


def curve_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Over all points of all curves: RMSE and MAE (and R2 of the pooled points)."""
    return regression_metrics(y_true, y_pred)


ERROR_METRICS = {"regression": "mae", "kernel_regression": "rmse", "classification": "error"}


def task_error(metrics: dict[str, float], task_type: str) -> float:
    """A task's headline error (lower is better): MAE (regression), curve RMSE (sequence tasks), error
    rate = 1 - accuracy (classification); NaN if the metrics lack it."""
    if task_type == "classification":
        return 1.0 - metrics["accuracy"] if "accuracy" in metrics else float("nan")
    return metrics.get(ERROR_METRICS[task_type], float("nan"))


def task_metrics(task_type: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metrics of a task type (``regression``, ``classification`` with ``y_pred`` = class
    probabilities, ``kernel_regression`` with one entry per curve point), in the task's unit."""
    if task_type == "classification":
        return classification_metrics(y_true, y_pred)
    if task_type == "kernel_regression":
        return curve_metrics(y_true, y_pred)
    return regression_metrics(y_true, y_pred)


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], dict[str, float]],
    groups: np.ndarray,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of each value ``statistic(index)`` returns, where ``index``
    selects items of the evaluated set. Whole groups are resampled with replacement (``groups[i]`` names
    item i's group, e.g. the composition a curve point belongs to), so correlated items stay together.
    Resamples on which a value is undefined (NaN, e.g. ROC-AUC of a one-class draw) are skipped for it.

    For a paired comparison of two models on the same test set, let ``statistic`` return the
    differences of their metrics on the same ``index``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        picked = rng.integers(0, len(members), len(members))
        for name, value in statistic(np.concatenate([members[g] for g in picked])).items():
            values.setdefault(name, [])
            if np.isfinite(value):
                values[name].append(value)
    quantiles = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    intervals = {}
    for name, draws in values.items():
        low, high = np.quantile(draws, quantiles) if draws else (float("nan"), float("nan"))
        intervals[name] = (float(low), float(high))
    return intervals


def metric_intervals(
    task_type: str, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, *, n_resamples: int = 1000
) -> dict[str, list[float]]:
    """95 % bootstrap interval ``[low, high]`` of each of a task's metrics (see :func:`task_metrics`),
    resampling the groups (compositions) with replacement."""

    def metrics(index: np.ndarray) -> dict[str, float]:
        return task_metrics(task_type, y_true[index], y_pred[index])

    intervals = bootstrap_intervals(metrics, groups, n_resamples=n_resamples)
    return {name: [low, high] for name, (low, high) in intervals.items()}
