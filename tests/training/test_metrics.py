import numpy as np
import pytest

from fm_engine.training.metrics import bootstrap_intervals, classification_metrics, regression_metrics


def test_binary_roc_auc_averages_ties_like_the_mann_whitney_statistic():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.9])
    # pairs (positive, negative): 9 in all; the positive at 0.4 ties two negatives at 0.4 (2 x 0.5)
    wins = sum(float(p > n) + 0.5 * float(p == n) for p in scores[labels == 1] for n in scores[labels == 0])
    proba = np.stack([1 - scores, scores], axis=1)
    assert classification_metrics(labels, proba)["roc_auc"] == pytest.approx(wins / 9)


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    values = np.random.default_rng(1).normal(5.0, 2.0, size=400)
    low, high = bootstrap_intervals(lambda index: {"mean": values[index].mean()}, np.arange(len(values)))["mean"]
    assert low < values.mean() < high
    half_width = 1.96 * values.std() / np.sqrt(len(values))
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_bootstrap_intervals_resample_whole_groups():
    # 40 groups of 10 identical points: the information is 40 values, not 400
    group_values = np.random.default_rng(2).normal(0.0, 1.0, size=40)
    values = np.repeat(group_values, 10)

    def mean(index: np.ndarray) -> dict[str, float]:
        return {"mean": values[index].mean()}

    grouped = bootstrap_intervals(mean, np.repeat(np.arange(40), 10))["mean"]
    per_point = bootstrap_intervals(mean, np.arange(len(values)))["mean"]
    per_group = bootstrap_intervals(lambda index: {"mean": group_values[index].mean()}, np.arange(40))["mean"]
    assert grouped[1] - grouped[0] > 2.5 * (per_point[1] - per_point[0])
    assert grouped == pytest.approx(per_group, abs=0.02)


def test_paired_difference_separates_a_better_model():
    rng = np.random.default_rng(3)
    truth = rng.normal(100.0, 30.0, size=300)
    good, poor = truth + rng.normal(0, 5.0, 300), truth + rng.normal(0, 8.0, 300)

    def differences(index: np.ndarray) -> dict[str, float]:
        a, b = regression_metrics(truth[index], good[index]), regression_metrics(truth[index], poor[index])
        return {name: a[name] - b[name] for name in a}

    intervals = bootstrap_intervals(differences, np.arange(300))
    assert intervals["mae"][1] < 0 and intervals["rmse"][1] < 0  # lower error on (almost) every resample
    assert intervals["r2"][0] > 0


def test_undefined_resamples_are_skipped():
    labels = np.array([1] * 29 + [0])  # many resamples miss the single negative: ROC-AUC undefined there
    proba = np.stack([np.linspace(1, 0, 30), np.linspace(0, 1, 30)], axis=1)
    intervals = bootstrap_intervals(lambda index: classification_metrics(labels[index], proba[index]), np.arange(30))
    assert intervals["roc_auc"] == (0.0, 0.0)  # the negative scores highest whenever it is drawn
    assert 0.0 < intervals["accuracy"][0] <= intervals["accuracy"][1] < 1.0  # defined on every resample


def test_bad_level_is_refused():
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals(lambda index: {}, np.arange(3), level=95)


@pytest.mark.parametrize("kind", ["regression", "vector", "curves", "binary", "binary_threshold", "three_classes"])
def test_metric_intervals_equal_the_resample_by_resample_bootstrap(kind):
    """The vectorised card intervals are the loop over resamples (same draws, same metrics), to float rounding."""
    from fm_engine.training.metrics import metric_intervals, task_metrics

    rng = np.random.default_rng(11)
    n = 60
    groups = rng.permutation(n) * 3  # any labels, in any order
    truth = rng.normal(size=n) * 5 + 100
    task_type, y_true, y_pred = "regression", truth, truth + rng.normal(size=n)
    if kind == "vector":
        y_true, y_pred = np.c_[truth, 2 * truth], np.c_[y_pred, 2 * y_pred + rng.normal(size=n)]
    if kind == "curves":  # three points per composition, resampled whole
        task_type, groups = "kernel_regression", np.repeat(groups, 3)
        y_true = np.repeat(truth, 3) + rng.normal(size=3 * n)
        y_pred = y_true + rng.normal(size=3 * n)
    threshold = 0.3 if kind == "binary_threshold" else None
    if kind in ("binary", "binary_threshold", "three_classes"):
        classes = 3 if kind == "three_classes" else 2
        task_type, y_true = "classification", rng.integers(0, classes, n)
        y_pred = rng.dirichlet(np.ones(classes), n)
        y_pred[: n // 3] = np.round(y_pred[: n // 3], 1)  # tied scores
    expected = bootstrap_intervals(
        lambda index: task_metrics(task_type, y_true[index], y_pred[index], threshold=threshold), groups
    )
    found = metric_intervals(task_type, y_true, y_pred, groups, threshold=threshold)
    assert sorted(found) == sorted(expected)
    for name, (low, high) in expected.items():
        assert found[name] == pytest.approx([low, high], rel=1e-9, abs=1e-12), name


def test_classification_metrics_on_predicted_classes_follow_the_decision_threshold():
    """Accuracy, balanced accuracy and macro-F1 score the classes the threshold predicts (sklearn's figures);
    ROC-AUC scores the probabilities and does not move."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    from fm_engine.training.metrics import classification_metrics

    rng = np.random.default_rng(5)
    y = (rng.random(200) < 0.2).astype(int)
    p1 = 0.2 * y + 0.4 * rng.random(200)  # an under-confident model: few positives above 0.5
    proba = np.column_stack([1 - p1, p1])
    at_half, at_low = classification_metrics(y, proba), classification_metrics(y, proba, threshold=0.35)
    for metrics, predicted in ((at_half, proba.argmax(axis=1)), (at_low, (p1 > 0.35).astype(int))):
        assert metrics["accuracy"] == pytest.approx(accuracy_score(y, predicted))
        assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
        assert metrics["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert at_low["balanced_accuracy"] > at_half["balanced_accuracy"]
    assert at_low["roc_auc"] == at_half["roc_auc"]
