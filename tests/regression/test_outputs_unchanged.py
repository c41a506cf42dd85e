"""Outputs unchanged: ``fm train``, ``fm demo``, ``fm predict`` and ``fm design`` (also ``--replay``) give the numbers
they gave when the fixtures were made (``make_fixtures.py``; regenerate only for an intended output change), and a
checkpoint written then still loads.

Every command runs as a real subprocess with one torch thread. On one machine the runs are bit-identical; the
tolerances allow the float32 rounding of another CPU, far below any change of behaviour (a different random draw,
default or formula moves these numbers by percents). Text columns (formulas, classes, messages) compare exactly.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from tests.regression.make_fixtures import (
    DESIGNS,
    FIXTURES,
    PREDICT_T_GRID,
    run_demo,
    run_fm,
    train_summary,
)

RTOL = 1e-5  # predictions and designs: a forward pass / a short optimisation in float32
ATOL = 1e-6  # also covers a flip of the last printed digit (recipes.csv prints 6 significant digits)
TRAIN_RTOL = 1e-4  # training metrics and weights: thousands of float32 steps
CHECKPOINT = FIXTURES / "checkpoint"


def assert_close(actual: Any, expected: Any, *, rtol: float, atol: float = ATOL, where: str = "") -> None:
    """Nested JSON values equal: numbers within the tolerance, everything else exactly."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), f"{where}: keys differ"
        for key in expected:
            assert_close(actual[key], expected[key], rtol=rtol, atol=atol, where=f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: lengths differ"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, rtol=rtol, atol=atol, where=f"{where}[{i}]")
    elif isinstance(expected, float | int) and not isinstance(expected, bool):
        assert isinstance(actual, float | int) and not isinstance(actual, bool), f"{where}: {actual!r} not a number"
        if math.isnan(expected):
            assert math.isnan(actual), f"{where}: {actual} != nan"
        else:
            assert math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def assert_same_table(actual_csv: Path, expected_csv: Path) -> None:
    """Same columns in the same order and the same rows: numbers within RTOL/ATOL, text exactly."""
    actual, expected = pd.read_csv(actual_csv), pd.read_csv(expected_csv)
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for column in expected.columns:
        a, e = actual[column], expected[column]
        if pd.api.types.is_numeric_dtype(e) and not pd.api.types.is_bool_dtype(e):
            assert pd.api.types.is_numeric_dtype(a), column
            np.testing.assert_allclose(a.to_numpy(float), e.to_numpy(float), rtol=RTOL, atol=ATOL, err_msg=column)
        else:
            assert a.fillna("").astype(str).tolist() == e.fillna("").astype(str).tolist(), column


def test_the_committed_checkpoint_still_loads():
    """A checkpoint written by an earlier version (the fixture) loads, with its tasks, units and weights."""
    from fm_engine import load_checkpoint

    card = json.loads((CHECKPOINT / "card.json").read_text(encoding="utf-8"))
    checkpoint = load_checkpoint(CHECKPOINT)
    assert checkpoint.weights_sha256 == card["weights_sha256"]
    assert checkpoint.checkpoint_id == card["checkpoint_id"]
    assert {name: task.unit for name, task in checkpoint.model.tasks.items()} == {
        t["name"]: t["unit"] for t in card["tasks"]
    }


ADDED_METRICS = ("balanced_accuracy",)
"""Card metrics added after the committed checkpoint was written (balanced accuracy: issue 16, decision
thresholds): a new metric is no change of the existing numbers, which must stay as they were."""


def without_added_metrics(summary: dict[str, Any], fixture: dict[str, Any]) -> dict[str, Any]:
    """``summary`` without the :data:`ADDED_METRICS` that the fixture's card does not have yet."""
    for name, task in summary["tasks"].items():
        for section in ("test_metrics", "test_metrics_ci95", "val_metrics"):
            known = fixture["tasks"].get(name, {}).get(section) or {}
            for metric in ADDED_METRICS:
                if metric not in known:
                    (task.get(section) or {}).pop(metric, None)
    return summary


def test_fm_train_reproduces_the_committed_checkpoint(tmp_path):
    shutil.copytree(FIXTURES / "data", tmp_path / "data")
    shutil.copy(FIXTURES / "train.yaml", tmp_path / "train.yaml")
    run_fm("train", "--config", tmp_path / "train.yaml", "--out", tmp_path / "run", "--no-progress", cwd=tmp_path)
    expected = train_summary(CHECKPOINT)
    assert_close(without_added_metrics(train_summary(tmp_path / "run"), expected), expected, rtol=TRAIN_RTOL)
    weights = load_file(tmp_path / "run" / "checkpoint" / "model.safetensors")
    expected = load_file(CHECKPOINT / "model.safetensors")
    assert sorted(weights) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(weights[name], values, rtol=TRAIN_RTOL, atol=ATOL, err_msg=name)


def test_fm_demo_metrics_unchanged(tmp_path):
    expected = json.loads((FIXTURES / "demo_expected.json").read_text(encoding="utf-8"))
    assert_close(run_demo(tmp_path / "demo"), expected, rtol=TRAIN_RTOL)


def test_fm_predict_output_unchanged(tmp_path):
    out = tmp_path / "predictions.csv"
    run_fm("predict", "--checkpoint", CHECKPOINT, "--input", FIXTURES / "predict_input.csv", "--output", out,
           "--composition-column", "formula", "--t-grid", PREDICT_T_GRID, "--no-progress", cwd=tmp_path)  # fmt: skip
    assert_same_table(out, FIXTURES / "predict_expected.csv")


def assert_same_design(out: Path, expected: Path) -> None:
    assert_same_table(out / "recipes.csv", expected / "recipes.csv")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    recorded = json.loads((expected / "results.json").read_text(encoding="utf-8"))
    for key in ("config", "random_seed", "seeds", "units", "trajectory"):
        assert_close(results[key], recorded[key], rtol=RTOL, where=key)


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_fm_design_output_unchanged(tmp_path, name):
    out = tmp_path / "design"
    run_fm("design", "--checkpoint", CHECKPOINT, "--config", FIXTURES / f"design_{name}.yaml", "--out", out,
           "--no-progress", cwd=tmp_path)  # fmt: skip
    assert_same_design(out, FIXTURES / f"design_{name}")


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_fm_design_replay_output_unchanged(tmp_path, name):
    """``--replay`` of a results.json written by the earlier version gives its recipes again."""
    out = tmp_path / "replay"
    run_fm("design", "--checkpoint", CHECKPOINT, "--replay", FIXTURES / f"design_{name}" / "results.json",
           "--out", out, "--no-progress", cwd=tmp_path)  # fmt: skip
    assert_same_design(out, FIXTURES / f"design_{name}")
