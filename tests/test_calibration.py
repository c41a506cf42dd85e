"""fm_engine.calibration: the spread's factor and floor, coverage and rank correlation on synthetic numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fm_engine.calibration import (
    SpreadScale,
    calibrate_task,
    coverage,
    error_spread_correlation,
    fit_spread_scale,
    fit_std_factor,
)


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


def test_the_factor_and_floor_are_the_maximum_likelihood_of_a_floored_spread():
    rng = np.random.default_rng(4)
    std = rng.uniform(0.05, 2.0, 20_000)
    mean = rng.normal(0, 10, 20_000)
    y = mean + np.hypot(3.0 * std, 0.7) * rng.standard_normal(20_000)
    scale, n = fit_spread_scale(y, mean, std)
    assert n == 20_000 and scale.a == pytest.approx(3.0, rel=0.05) and scale.b == pytest.approx(0.7, rel=0.1)
    assert scale.apply(np.array([0.0, 1.0])) == pytest.approx([scale.b, math.hypot(scale.a, scale.b)])
    # errors proportional to the spread: no floor, the one-factor fit exactly
    y, mean, std = normal_errors(5000, scale=2.0, seed=5)
    assert fit_spread_scale(y, mean, std) == (SpreadScale(a=fit_std_factor(y, mean, std)[0], b=0.0), 5000)
    # the same data in other units: a unchanged, b in the new unit
    scaled, _ = fit_spread_scale(1000 * y, 1000 * mean, 1000 * std)
    assert scaled.a == pytest.approx(fit_std_factor(y, mean, std)[0], rel=1e-6) and scaled.b == 0
    # zero spreads are used now (the floor covers them): errors that do not grow with the spread give the floor alone
    alone, n = fit_spread_scale(np.array([1.0, -1.0, 1.0, -1.0]), np.zeros(4), np.array([0.0, 0.0, 1.0, 2.0]))
    assert n == 4 and alone.a < 1e-3 and alone.b == pytest.approx(1.0, rel=1e-3)
    # no spread at all (identical members), no error at all, or no values: a = 1, b = 0
    assert fit_spread_scale(np.ones(3), np.zeros(3), np.zeros(3)) == (SpreadScale(), 0)
    assert fit_spread_scale(np.zeros(3), np.zeros(3), np.ones(3)) == (SpreadScale(), 3)
    assert fit_spread_scale(np.full(2, np.nan), np.zeros(2), np.ones(2)) == (SpreadScale(), 0)


def test_a_few_confident_misses_raise_the_floor_not_the_factor():
    # band-gap-like: most errors ~ 2 x std, a few rows with std ~ 0 and a 5-unit miss
    y, mean, std = normal_errors(2000, scale=2.0, seed=6)
    std[:20], y[:20] = 1e-3, mean[:20] + 5.0
    factor, _ = fit_std_factor(y, mean, std)
    result = calibrate_task((y, mean, std), normal_errors(2000, scale=2.0, seed=7))
    assert factor > 100 and result.factor < 4 and result.floor > 0.1
    assert result.coverage_1_after < 0.9 and result.coverage_2_after > 0.9  # useful intervals, unlike factor 100+


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
