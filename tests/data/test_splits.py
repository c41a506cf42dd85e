import numpy as np
import pytest

from fm_engine.data.splits import MultiTaskSplitter, overlay_split_labels, resolve_splits, subsample_keep_mask


def make_availability(n=2000, rare=20, seed=0):
    rng = np.random.default_rng(seed)
    keys = [f"k{i:05d}" for i in range(n)]
    availability = np.zeros((n, 3), dtype=bool)
    availability[:, 0] = True
    availability[rng.choice(n, size=rare, replace=False), 1] = True
    availability[rng.choice(n, size=n // 2, replace=False), 2] = True
    return keys, availability


def test_global_proportions_hold():
    keys, availability = make_availability()
    labels = MultiTaskSplitter(val_ratio=0.1, test_ratio=0.2, seed=1).split(keys, availability)
    assert (labels == "val").sum() == 200
    assert (labels == "test").sum() == 400


def test_rare_task_gets_its_share_of_val_and_test():
    keys, availability = make_availability(rare=20)
    for seed in range(5):
        labels = MultiTaskSplitter(val_ratio=0.1, test_ratio=0.1, seed=seed).split(keys, availability)
        rare = labels[availability[:, 1]]
        assert (rare == "val").sum() == 2
        assert (rare == "test").sum() == 2


def test_split_is_reproducible_and_independent_of_row_order():
    keys, availability = make_availability()
    splitter = MultiTaskSplitter(seed=7)
    first = splitter.split(keys, availability)
    assert (splitter.split(keys, availability) == first).all()
    order = np.random.default_rng(3).permutation(len(keys))
    shuffled = splitter.split([keys[i] for i in order], availability[order])
    assert (shuffled == first[order]).all()
    assert not (MultiTaskSplitter(seed=8).split(keys, availability) == first).all()


def test_overlay_precedence_and_conflict_warning():
    with pytest.warns(UserWarning, match="2 composition\\(s\\) have conflicting split labels"):
        merged = overlay_split_labels([{"a": "train", "b": "val", "c": None}, {"a": "test", "b": "train", "d": "val"}])
    assert merged == {"a": "test", "b": "val", "d": "val"}


def test_file_labels_win_and_the_rest_is_split():
    keys, availability = make_availability(n=100, rare=5)
    labels = resolve_splits(keys, availability, {"k00000": "test", "k00001": "val"}, seed=0)
    assert labels[0] == "test" and labels[1] == "val"
    assert set(labels) <= {"train", "val", "test"}


def test_keep_mask_keeps_the_requested_share_reproducibly():
    valid = np.zeros(1000, dtype=bool)
    valid[::2] = True
    keep = subsample_keep_mask(valid, 0.2, seed=1, task="gap")
    assert keep.sum() == 100
    assert not (keep & ~valid).any()
    assert (subsample_keep_mask(valid, 0.2, seed=1, task="gap") == keep).all()
    assert not (subsample_keep_mask(valid, 0.2, seed=1, task="other") == keep).all()
    assert (subsample_keep_mask(valid, 1.0, seed=1, task="gap") == valid).all()


def test_bad_ratios():
    with pytest.raises(ValueError):
        MultiTaskSplitter(val_ratio=0.6, test_ratio=0.5)
