"""fm_engine.thresholds: the predicted class of a binary task from a decision threshold, balanced accuracy, and
the threshold chosen on validation rows (every candidate checked by brute force)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from fm_engine.thresholds import balanced_accuracy, choose_threshold, hard_labels


def test_hard_labels_follow_the_threshold_and_fall_back_to_the_most_probable_class():
    p1 = np.array([0.1, 0.3, 0.5, 0.6, 0.9])
    proba = np.column_stack([1 - p1, p1])
    assert hard_labels(proba, 0.25).tolist() == [0, 1, 1, 1, 1]
    assert hard_labels(proba, 0.7).tolist() == [0, 0, 0, 0, 1]
    assert hard_labels(proba, 0.3).tolist() == [0, 0, 1, 1, 1]  # strictly above the threshold
    for none_or_half in (None, 0.5):  # exactly the argmax of before (a tie goes to the first class)
        assert hard_labels(proba, none_or_half).tolist() == proba.argmax(axis=1).tolist()
    three = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    assert hard_labels(three, 0.2).tolist() == [2, 0]  # a threshold means nothing for three classes


@pytest.mark.parametrize("seed", range(4))
def test_balanced_accuracy_is_sklearns(seed):
    rng = np.random.default_rng(seed)
    y, predicted = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    assert balanced_accuracy(y, predicted) == pytest.approx(balanced_accuracy_score(y, predicted))
    y[y == 2] = 0  # a class that is predicted but absent from the truth does not count
    assert balanced_accuracy(y, predicted) == pytest.approx(np.mean([np.mean(predicted[y == c] == c) for c in (0, 1)]))


def brute_force(y: np.ndarray, p1: np.ndarray) -> tuple[float, float]:
    """The best balanced accuracy over every threshold that splits the rows differently, and 0.5's."""
    splits = np.unique(np.concatenate([[0.0], p1]))  # threshold at a value: rows up to it are class 0
    best = max(balanced_accuracy(y, (p1 > t).astype(int)) for t in splits)
    return best, balanced_accuracy(y, (p1 > 0.5).astype(int))


@pytest.mark.parametrize("seed", range(6))
def test_the_chosen_threshold_has_the_best_balanced_accuracy_and_is_closest_to_half(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.15).astype(int)  # imbalanced, like glass forming or is-metal
    p1 = np.clip(0.25 * y + 0.45 * rng.random(300), 0, 1)  # an under-confident model: positives mostly < 0.5
    p1[:40] = np.round(p1[:40], 2)  # tied probabilities
    choice = choose_threshold(y, p1)
    assert choice is not None and choice.n == 300
    best, at_half = brute_force(y, p1)
    assert choice.balanced_accuracy == pytest.approx(best)
    assert balanced_accuracy(y, hard_labels(np.column_stack([1 - p1, p1]), choice.threshold)) == pytest.approx(best)
    assert choice.balanced_accuracy_at_half == pytest.approx(at_half)
    assert choice.threshold < 0.5 and choice.balanced_accuracy > at_half
    # no equally good threshold is closer to 0.5 (every split point, and the gaps' middles)
    values = np.unique(p1)
    for t in np.concatenate([values, (values[:-1] + values[1:]) / 2]):
        if abs(t - 0.5) < abs(choice.threshold - 0.5):
            assert balanced_accuracy(y, (p1 > t).astype(int)) < best - 1e-12


def test_half_is_kept_when_it_is_among_the_best():
    y = np.array([0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.2, 0.3, 0.8, 0.9])  # every threshold in [0.3, 0.8) separates the classes
    choice = choose_threshold(y, p1)
    assert choice is not None and choice.threshold == 0.5 and choice.balanced_accuracy == 1.0
    shifted = choose_threshold(y, np.array([0.05, 0.1, 0.6, 0.8, 0.9]))  # separable only in [0.6, 0.8)
    assert shifted is not None and shifted.threshold == pytest.approx(0.7) and shifted.balanced_accuracy == 1.0
    assert shifted.balanced_accuracy_at_half == pytest.approx((2 / 3 + 1) / 2)


def test_no_threshold_without_rows_of_both_classes():
    assert choose_threshold(np.zeros(5, int), np.linspace(0, 1, 5)) is None
    assert choose_threshold(np.ones(3, int), np.linspace(0, 1, 3)) is None
    assert choose_threshold(np.zeros(0, int), np.zeros(0)) is None
