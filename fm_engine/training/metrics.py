"""Metrics in physical units: regression (MAE, RMSE, R2), classification (accuracy, balanced accuracy,
macro-F1 from the predicted classes; ROC-AUC from the probabilities), sequence tasks (curve RMSE over all points,
MAE)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fm_engine.thresholds import balanced_accuracy, hard_labels


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


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, *, threshold: float | None = None
) -> dict[str, float]:
    """``proba`` (n, C) class probabilities; the predicted classes (accuracy, balanced accuracy, macro-F1) follow
    a binary task's decision ``threshold`` (None: the most probable class, see
    :func:`fm_engine.thresholds.hard_labels`); ROC-AUC (from the probabilities) is binary or macro one-vs-rest."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = proba.shape[1]
    y_pred = hard_labels(proba, threshold)
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
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
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


def task_metrics(
    task_type: str, y_true: np.ndarray, y_pred: np.ndarray, *, threshold: float | None = None
) -> dict[str, float]:
    """The metrics of a task type (``regression``, ``classification`` with ``y_pred`` = class
    probabilities and a binary task's decision ``threshold``, ``kernel_regression`` with one entry per curve
    point), in the task's unit."""
    if task_type == "classification":
        return classification_metrics(y_true, y_pred, threshold=threshold)
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
    task_type: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int = 1000,
    threshold: float | None = None,
) -> dict[str, list[float]]:
    """95 % bootstrap interval ``[low, high]`` of each of a task's metrics (see :func:`task_metrics`),
    resampling the groups (compositions) with replacement.

    The same resamples as :func:`bootstrap_intervals` (same seed, same draws), evaluated many at a time from
    per-group sums (regression: absolute and squared errors, centred targets; classification: each
    resample's confusion matrix and, for ROC-AUC, its positives and negatives per tie block of the scores,
    sorted once). Equal to evaluating each resample's items up to float rounding, and fast on large test
    sets (1000 resamples of 40,000 compositions in about a second, where gathering every resample took
    about a minute). ``threshold``: a binary task's decision threshold (see :func:`classification_metrics`)."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    if task_type == "classification" and len(inverse) != n_groups:  # never for our tasks: one row per composition
        iv = bootstrap_intervals(
            lambda i: task_metrics(task_type, y_true[i], y_pred[i], threshold=threshold),
            groups,
            n_resamples=n_resamples,
        )
        return {name: [low, high] for name, (low, high) in iv.items()}
    if task_type == "classification":
        evaluate: _ClassificationDraws | _RegressionDraws = _ClassificationDraws(
            y_true, y_pred, inverse, n_groups, threshold=threshold
        )
    else:
        evaluate = _RegressionDraws(y_true, y_pred, inverse, n_groups)
    rng = np.random.default_rng(0)
    values: dict[str, list[np.ndarray]] = {}
    chunk = max(1, min(n_resamples, 2**21 // max(n_groups, 1)))
    for start in range(0, n_resamples, chunk):
        draws = np.stack([rng.integers(0, n_groups, n_groups) for _ in range(min(chunk, n_resamples - start))])
        for name, value in evaluate(draws).items():
            values.setdefault(name, []).append(value)
    intervals = {}
    for name, parts in values.items():
        finite = np.concatenate(parts)
        finite = finite[np.isfinite(finite)]
        low, high = np.quantile(finite, [0.025, 0.975]) if len(finite) else (float("nan"), float("nan"))
        intervals[name] = [float(low), float(high)]
    return intervals


def _per_resample_counts(keys: np.ndarray, n_keys: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(R, n_keys) sums of ``weights`` (default 1) over each row of ``keys`` (R, n) in 0..n_keys-1."""
    offsets = np.arange(len(keys))[:, None] * n_keys
    total = np.bincount((keys + offsets).ravel(), weights=None if weights is None else weights.ravel(),
                        minlength=len(keys) * n_keys)  # fmt: skip
    return total.reshape(len(keys), n_keys)


class _RegressionDraws:
    """MAE, RMSE and R2 (see :func:`regression_metrics`) of resamples drawn as group indices."""

    def __init__(self, y_true: np.ndarray, y_pred: np.ndarray, inverse: np.ndarray, n_groups: int) -> None:
        y = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
        error = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1) - y
        centred = y - y.mean(axis=0)  # sums of squares about the whole set's mean: no cancellation

        def per_group(values: np.ndarray) -> np.ndarray:
            return np.bincount(inverse, weights=values, minlength=n_groups)

        points = np.bincount(inverse, minlength=n_groups).astype(np.float64)
        self.n_groups = n_groups
        self.sums = np.stack(
            [points * y.shape[1], per_group(np.abs(error).sum(axis=1)), per_group((error**2).sum(axis=1)),
             per_group((centred**2).sum(axis=1)), points] + [per_group(centred[:, j]) for j in range(y.shape[1])],
            axis=1,
        )  # fmt: skip

    def __call__(self, draws: np.ndarray) -> dict[str, np.ndarray]:
        totals = _per_resample_counts(draws, self.n_groups).astype(np.float64) @ self.sums
        items, absolute, ss_res, y_sq, points = totals[:, :5].T
        ss_tot = y_sq - (totals[:, 5:] ** 2).sum(axis=1) / points
        defined = ss_tot > 1e-12 * np.maximum(y_sq, 1e-300)
        return {
            "mae": absolute / items,
            "rmse": np.sqrt(ss_res / items),
            "r2": np.where(defined, 1.0 - ss_res / np.where(defined, ss_tot, 1.0), np.nan),
        }


class _ClassificationDraws:
    """Accuracy, balanced accuracy, macro-F1 and ROC-AUC (see :func:`classification_metrics`) of resamples drawn
    as group indices (one item per group)."""

    def __init__(
        self, y_true: np.ndarray, proba: np.ndarray, inverse: np.ndarray, n_groups: int, *, threshold: float | None
    ) -> None:
        y_true = np.asarray(y_true, dtype=np.int64)
        proba = np.asarray(proba, dtype=np.float64)
        self.n_classes = c = proba.shape[1]
        by_group = np.empty(n_groups, dtype=np.int64)
        by_group[inverse] = np.arange(len(inverse))  # the item of each group
        y_true, proba = y_true[by_group], proba[by_group]
        self.confusion_key = y_true * c + hard_labels(proba, threshold)
        self.blocks = []  # per scored class: (tie block of each group * 2 + positive, number of blocks)
        for k in [1] if c == 2 else range(c):
            _, block = np.unique(proba[:, k], return_inverse=True)  # ascending scores, ties share a block
            self.blocks.append((block * 2 + (y_true == k), int(block.max()) + 1))

    def __call__(self, draws: np.ndarray) -> dict[str, np.ndarray]:
        c = self.n_classes
        confusion = _per_resample_counts(self.confusion_key[draws], c * c).reshape(len(draws), c, c).astype(float)
        total = confusion.sum(axis=(1, 2))
        tp = np.diagonal(confusion, axis1=1, axis2=2)
        fp, fn = confusion.sum(axis=1) - tp, confusion.sum(axis=2) - tp
        present = (tp + fp + fn) > 0
        f1 = np.where(present, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-300), 0.0)
        n_present = present.sum(axis=1)
        rows_of_class = confusion.sum(axis=2)  # true rows per class
        recall = np.where(rows_of_class > 0, tp / np.maximum(rows_of_class, 1e-300), 0.0)
        n_classes_present = (rows_of_class > 0).sum(axis=1)
        aucs = []
        for key, n_blocks in self.blocks:
            counts = _per_resample_counts(key[draws], 2 * n_blocks).reshape(len(draws), n_blocks, 2).astype(float)
            neg, pos = counts[:, :, 0], counts[:, :, 1]
            below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each tie block
            n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
            defined = (n_pos > 0) & (n_neg > 0)
            u = (pos * (below + 0.5 * neg)).sum(axis=1)
            aucs.append(np.where(defined, u / np.where(defined, n_pos * n_neg, 1.0), np.nan))
        stacked = np.stack(aucs, axis=1)
        finite = np.isfinite(stacked)
        auc = np.where(finite.any(axis=1), np.where(finite, stacked, 0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1),
                       np.nan)  # fmt: skip
        return {
            "accuracy": np.trace(confusion, axis1=1, axis2=2) / total,
            "balanced_accuracy": recall.sum(axis=1) / n_classes_present,
            "macro_f1": np.where(n_present > 0, f1.sum(axis=1) / np.maximum(n_present, 1), np.nan),
            "roc_auc": auc,
        }
