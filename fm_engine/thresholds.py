"""Decision thresholds of binary classification tasks: the predicted class from class probabilities.

A binary task predicts its second class (``classes[1]``) when that class's probability exceeds the task's
decision threshold, else its first class. Training chooses the threshold on the run's validation split
(:func:`choose_threshold`: the highest balanced accuracy, ties -> the threshold closest to 0.5) unless the
task's ``decision_threshold`` setting fixes it; it is stored in the checkpoint. Without a threshold (multi-class
tasks, checkpoints written before thresholds existed, a threshold of exactly 0.5) the predicted class is the most
probable one, exactly as before. Probabilities are never changed.

Pure numpy: the inference side (predictions, cards, the workbench) imports it without the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUTO = "auto"
"""The ``decision_threshold`` setting that chooses the threshold on the validation split."""
HALF = 0.5


def hard_labels(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Predicted class indices (n,) from class probabilities ``proba`` (n, C): for two classes with a
    ``threshold`` other than 0.5, class 1 where ``proba[:, 1] > threshold``; else the most probable class
    (argmax, ties to the first class)."""
    proba = np.asarray(proba)
    if threshold is None or threshold == HALF or proba.ndim != 2 or proba.shape[1] != 2:
        return proba.argmax(axis=1)
    return (proba[:, 1] > threshold).astype(np.int64)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean over the classes present in ``y_true`` of the share of their rows predicted right (recall);
    for two classes, matbench's leaderboard score (ROC-AUC of hard labels). NaN for no rows."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    present = np.unique(y_true)
    if not len(present):
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in present]))


@dataclass(frozen=True)
class ThresholdChoice:
    """A chosen decision threshold and the validation figures behind it (``n``: validation rows;
    balanced accuracy at the chosen threshold and at 0.5)."""

    threshold: float
    n: int
    balanced_accuracy: float
    balanced_accuracy_at_half: float


def choose_threshold(y_true: np.ndarray, p1: np.ndarray) -> ThresholdChoice | None:
    """The threshold on the probability ``p1`` of class 1 with the highest balanced accuracy on the labelled rows
    ``y_true`` (0 / 1); among equally good thresholds the one closest to 0.5 (0.5 itself when it is among them).
    Candidates: 0.5 and the midpoints between neighbouring distinct values of ``p1`` (every distinct split of the
    rows, each at the middle of its gap). None unless both classes have rows."""
    y_true = np.asarray(y_true, dtype=np.int64)
    p1 = np.asarray(p1, dtype=np.float64)
    n_pos = int((y_true == 1).sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    values = np.unique(p1)
    candidates = np.unique(np.concatenate([[HALF], (values[:-1] + values[1:]) / 2]))
    # rows predicted class 0 at threshold t: p1 <= t, counted per class by sorted search
    negatives_below = np.searchsorted(np.sort(p1[y_true == 0]), candidates, side="right")
    positives_below = np.searchsorted(np.sort(p1[y_true == 1]), candidates, side="right")
    scores = (negatives_below / n_neg + (n_pos - positives_below) / n_pos) / 2
    best = np.flatnonzero(np.isclose(scores, scores.max(), rtol=0, atol=1e-12))
    chosen = best[np.argmin(np.abs(candidates[best] - HALF))]
    at_half = int(np.flatnonzero(candidates == HALF)[0])
    return ThresholdChoice(
        threshold=float(candidates[chosen]),
        n=len(y_true),
        balanced_accuracy=float(scores[chosen]),
        balanced_accuracy_at_half=float(scores[at_half]),
    )
