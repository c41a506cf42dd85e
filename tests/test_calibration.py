"""fm_engine.calibration: the spread's factor, coverage and rank correlation on synthetic numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fm_engine.calibration import calibrate_task, coverage, error_spread_correlation, fit_std_factor


def normal_errors(n: int, *, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truths whose error is normal with standard deviation ``scale * std`` (std varies by row)."""
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.5, 3.0, n)
    mean = rng.normal(0, 10, n)
    return mean + scale * std * rng.standard_normal(n), mean, std


def test_the_factor_is_the_maximum_likelihood_scale_of_the_spread():
    y, mean, std = normal_errors(20_000, scale=3.0, seed=1)
    factor, n = fit_std_factor(y, mean, std)
    assert n == 20_000 and factor == pytest.approx(3.0, rel=0.02)
    # exactly: errors of 2 std everywhere give factor 2; zero spreads and NaN values are left out
    factor, n = fit_std_factor(np.array([2.0, -4.0, 5.0, np.nan]), np.zeros(4), np.array([1.0, 2.0, 0.0, 1.0]))
    assert (factor, n) == (pytest.approx(2.0), 2)
    assert fit_std_factor(np.ones(3), np.zeros(3), np.zeros(3)) == (1.0, 0)  # no spread at all: factor 1


def test_calibration_brings_the_test_coverage_to_the_normal_shares():
    validation, test = normal_errors(5000, scale=4.0, seed=2), normal_errors(5000, scale=4.0, seed=3)
    result = calibrate_task(validation, test)
    assert result.coverage_1_before < 0.3 and result.coverage_2_before < 0.5
    assert result.coverage_1_after == pytest.approx(0.683, abs=0.02)
    assert result.coverage_2_after == pytest.approx(0.954, abs=0.02)
    assert result.n_val == result.n_test == 5000
    assert result.spearman > 0.2  # larger spreads do point at larger errors here


def test_coverage_and_rank_correlation_by_hand():
    y, mean, std = np.array([0.5, 1.5, 3.0, 0.0]), np.zeros(4), np.ones(4)
    assert coverage(y, mean, std, 1) == 0.5 and coverage(y, mean, std, 2) == 0.75
    assert error_spread_correlation(y, mean, np.array([1.0, 2.0, 3.0, 0.5])) == pytest.approx(1.0)
    assert math.isnan(error_spread_correlation(y, mean, std))  # a constant spread ranks nothing
