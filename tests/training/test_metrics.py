import numpy as np
import pytest

from fm_engine.training.metrics import bootstrap_interval, classification_metrics, regression_metrics


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    values = np.random.default_rng(1).normal(5.0, 2.0, size=400)
    low, high = bootstrap_interval(lambda index: float(values[index].mean()), np.arange(len(values)))
    assert low < values.mean() < high
    half_width = 1.96 * values.std() / np.sqrt(len(values))
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_bootstrap_interval_resamples_whole_groups():
    # 40 groups of 10 identical points: the information is 40 values, not 400
    group_values = np.random.default_rng(2).normal(0.0, 1.0, size=40)
    values = np.repeat(group_values, 10)
    groups = np.repeat(np.arange(40), 10)

    def mean(index: np.ndarray) -> float:
        return float(values[index].mean())

    grouped = bootstrap_interval(mean, groups)
    per_point = bootstrap_interval(mean, np.arange(len(values)))
    per_group = bootstrap_interval(lambda index: float(group_values[index].mean()), np.arange(40))
    assert grouped[1] - grouped[0] > 2.5 * (per_point[1] - per_point[0])
    assert grouped == pytest.approx(per_group, abs=0.02)


def test_paired_difference_separates_a_better_model():
    rng = np.random.default_rng(3)
    truth = rng.normal(100.0, 30.0, size=300)
    good, poor = truth + rng.normal(0, 5.0, 300), truth + rng.normal(0, 8.0, 300)

    def mae_difference(index: np.ndarray) -> float:
        return (
            regression_metrics(truth[index], good[index])["mae"] - regression_metrics(truth[index], poor[index])["mae"]
        )

    low, high = bootstrap_interval(mae_difference, np.arange(300))
    assert high < 0  # the better model's MAE is lower on (almost) every resample
    same_low, same_high = bootstrap_interval(lambda index: 0.0 * index.sum(), np.arange(300))
    assert same_low == same_high == 0.0


def test_undefined_resamples_are_skipped():
    labels = np.array([1] * 29 + [0])  # many resamples miss the single negative: ROC-AUC undefined
    proba = np.stack([1 - np.linspace(0, 1, 30), np.linspace(0, 1, 30)], axis=1)
    low, high = bootstrap_interval(
        lambda index: classification_metrics(labels[index], proba[index])["roc_auc"], np.arange(30)
    )
    assert 0.0 <= low <= high <= 1.0


def test_bad_level_is_refused():
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(lambda index: 0.0, np.arange(3), level=95)
