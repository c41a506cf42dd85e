"""Calibration of an ensemble's spread: one factor per task that scales the standard deviation over the members.

The members' standard deviation ``std`` (see :func:`fm_engine.predict.predict_members`) ranks predictions by how
sure the ensemble is, but its size is not an error bar: members trained on the same data agree more than they are
right, so ``mean +/- std`` usually holds far fewer than 68 % of the truths. Following the recalibrated ensembles of
Palmer et al. (npj Comput. Mater. 8, 115, 2022), each regression or curve task gets one factor ``s`` fitted on the
VALIDATION split by maximum likelihood of ``y ~ Normal(mean, (s * std)^2)``::

    s^2 = mean over validation rows with std > 0 of ((y - mean) / std)^2

so the standardized errors ``(y - mean) / (s * std)`` have unit spread on validation (a curve task pools all its
validation curve points; a vector task all its components). Every ``_std`` a user sees or exports is
``s * std``. The test split is never used to fit ``s``; it only measures the result (:func:`calibration_figures`):
the share of truths inside ``mean +/- 1 std`` and ``+/- 2 std`` before and after (a normal error gives 68.3 % and
95.4 %) and the Spearman rank correlation between ``|y - mean|`` and ``std`` (unchanged by ``s``: it says whether
a larger spread does point at a larger error).

Classification tasks keep factor 1: the spread of a class probability over the members is not an error bar of a
normal variable, and the decision threshold (chosen on validation from the mean probabilities) is the calibrated
part of their output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

NORMAL_COVERAGE = {1: 0.6827, 2: 0.9545}  # share of a normal variable within 1 and 2 standard deviations
EXPECTED_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
"""Central probabilities of the calibration plot: the interval ``mean +/- z * std`` that holds this share of a normal
error (``z = 0.126 ... 2.576``) is checked against the share of test truths it holds."""
UNCALIBRATED_NOTE = (
    "this ensemble checkpoint was saved before calibration existed: its _std columns are the members' raw standard "
    "deviation (factor 1), usually too narrow; retrain it to calibrate them"
)


def fit_std_factor(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[float, int]:
    """The maximum-likelihood factor ``s`` (see the module docstring) of validation truths ``y``, ensemble means and
    members' standard deviations (any matching shapes, flattened; NaN rows skipped), and the number of values it
    was fitted on (those with ``std > 0``). No such value: factor 1.0 fitted on 0 values."""
    y, mean, std = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (y, mean, std))
    used = np.isfinite(y) & np.isfinite(mean) & np.isfinite(std) & (std > 0)
    if not used.any():
        return 1.0, 0
    factor = math.sqrt(float(np.mean(((y[used] - mean[used]) / std[used]) ** 2)))
    return (factor if math.isfinite(factor) and factor > 0 else 1.0), int(used.sum())


def coverage(y: np.ndarray, mean: np.ndarray, std: np.ndarray, k: float) -> float:
    """The share of truths ``y`` inside ``mean +/- k * std`` (every finite value counts; a zero spread holds only an
    exact prediction); NaN without values."""
    y, mean, std = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (y, mean, std))
    used = np.isfinite(y) & np.isfinite(mean) & np.isfinite(std)
    if not used.any():
        return float("nan")
    return float(np.mean(np.abs(y[used] - mean[used]) <= k * std[used]))


def error_spread_correlation(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """Spearman rank correlation between ``|y - mean|`` and ``std`` (NaN when either is constant or < 3 values)."""
    y, mean, std = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (y, mean, std))
    used = np.isfinite(y) & np.isfinite(mean) & np.isfinite(std)
    if used.sum() < 3:
        return float("nan")
    errors, spreads = np.abs(y[used] - mean[used]), std[used]
    if np.ptp(errors) == 0 or np.ptp(spreads) == 0:
        return float("nan")
    value = pd.Series(errors).corr(pd.Series(spreads), method="spearman")
    return float(value) if value is not None and math.isfinite(value) else float("nan")


def observed_coverage(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> list[float]:
    """Per level of :data:`EXPECTED_LEVELS`, the share of truths inside ``mean +/- z * std`` where ``z`` is the
    normal quantile of that central probability (a calibrated normal error: the level itself)."""
    normal = NormalDist()
    return [coverage(y, mean, std, normal.inv_cdf((1 + level) / 2)) for level in EXPECTED_LEVELS]


@dataclass
class TaskCalibration:
    """One task's calibration: ``factor`` fitted on ``n_val`` validation values, and its effect on ``n_test`` test
    values: shares (0..1) of truths inside mean +/- 1 and 2 std before (raw members' std) and after (``factor *
    std``), and the Spearman correlation between |error| and std on the test split."""

    factor: float = 1.0
    n_val: int = 0
    n_test: int = 0
    coverage_1_before: float = float("nan")
    coverage_2_before: float = float("nan")
    coverage_1_after: float = float("nan")
    coverage_2_after: float = float("nan")
    spearman: float = float("nan")
    # the calibration plot: per level of EXPECTED_LEVELS, the share of test truths inside the interval that should
    # hold that share, with the raw (before) and calibrated (after) std; empty: not measured
    observed_before: list[float] = field(default_factory=list)
    observed_after: list[float] = field(default_factory=list)

    def to_mapping(self) -> dict[str, float | int | None]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def calibrate_task(
    validation: tuple[np.ndarray, np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> TaskCalibration:
    """Fit a task's factor on ``validation`` = (truths, ensemble means, members' std) and measure it on ``test``
    (same triple; None: no test figures)."""
    factor, n_val = fit_std_factor(*validation)
    result = TaskCalibration(factor=factor, n_val=n_val)
    if test is not None:
        y, mean, std = test
        std = np.asarray(std, dtype=np.float64)
        result.n_test = int(np.isfinite(np.asarray(y, dtype=np.float64)).sum())
        result.coverage_1_before, result.coverage_2_before = (coverage(y, mean, std, k) for k in (1, 2))
        result.coverage_1_after, result.coverage_2_after = (coverage(y, mean, factor * std, k) for k in (1, 2))
        result.spearman = error_spread_correlation(y, mean, std)
        if result.n_test:
            result.observed_before = observed_coverage(y, mean, std)
            result.observed_after = observed_coverage(y, mean, factor * std)
    return result


def calibration_markdown(calibration: Mapping[str, TaskCalibration]) -> list[str]:
    """The model card's calibration section (markdown lines); an empty mapping gives the note of an old checkpoint."""
    lines = ["## Calibration of the spread", ""]
    if not calibration:
        return lines + [f"Not calibrated: {UNCALIBRATED_NOTE}.", ""]
    lines += ["Every `_std` is the members' standard deviation times the task's factor, fitted on the validation "
              "split so that (truth - mean) / (factor x std) has unit spread there (maximum likelihood, Palmer et "
              "al. 2022). On the test split: the share of truths inside mean +/- 1 std and +/- 2 std (a normal error "
              "gives 68 % and 95 %), before (raw std) and after calibration, and the Spearman rank correlation "
              "between |error| and std. Classification tasks are not calibrated (factor 1).", "",
              "| task | factor | val n | test n | +/-1 std before | after | +/-2 std before | after | "
              "Spearman(abs error, std) |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for task, c in calibration.items():
        lines.append(f"| {task} | {c.factor:.3g} | {c.n_val} | {c.n_test} | {_share(c.coverage_1_before)} | "
                     f"{_share(c.coverage_1_after)} | {_share(c.coverage_2_before)} | {_share(c.coverage_2_after)} | "
                     f"{_number(c.spearman)} |")  # fmt: skip
    return lines + [""]


def _share(value: float) -> str:
    return f"{100 * value:.1f} %" if math.isfinite(value) else "n/a"


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"
