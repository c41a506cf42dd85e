"""Calibration of an ensemble's spread: per task a factor ``a`` and a floor ``b`` that turn the members' standard
deviation into an error bar.

The members' standard deviation ``std`` (see :func:`fm_engine.predict.predict_members`) ranks predictions by how
sure the ensemble is, but its size is not an error bar: members trained on the same data agree more than they are
right, so ``mean +/- std`` usually holds far fewer than 68 % of the truths. Following the recalibrated ensembles of
Palmer et al. (npj Comput. Mater. 8, 115, 2022), each regression or curve task gets a two-parameter spread::

    calibrated std = sqrt((a * std)^2 + b^2)        (a >= 0 without unit, b >= 0 in the task's unit)

fitted on the VALIDATION split by maximum likelihood of ``y ~ Normal(mean, calibrated std^2)`` (minimising the mean
of ``log(s^2) + (y - mean)^2 / s^2``; a curve task pools all its validation curve points, a vector task all its
components). ``b`` is a floor: where every member confidently predicts the same wrong value (a band gap of 0 eV for
a 3 eV semiconductor) one factor alone would have to grow a hundredfold and make every other interval useless; the
floor absorbs those errors instead. With ``b = 0`` it is the one-factor calibration ``a^2 = mean(((y - mean) /
std)^2)`` (:func:`fit_std_factor`, its starting point). Every ``_std`` a user sees or exports is the calibrated std.
The test split is never used to fit ``a`` and ``b``; it only measures the result (:func:`calibrate_task`): the
share of truths inside ``mean +/- 1 std`` and ``+/- 2 std`` before and after (a normal error gives 68.3 % and
95.4 %) and the Spearman rank correlation between ``|y - mean|`` and ``std`` (unchanged by ``a``: it says whether a
larger spread does point at a larger error).

Classification tasks keep ``a = 1, b = 0``: the spread of a class probability over the members is not an error bar
of a normal variable, and the decision threshold (chosen on validation from the mean probabilities) is the
calibrated part of their output.
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


@dataclass(frozen=True)
class SpreadScale:
    """A task's calibration of the spread: ``calibrated std = sqrt((a * std)^2 + b^2)``; ``a`` has no unit, ``b``
    (the floor) is in the task's unit. ``SpreadScale()`` (a = 1, b = 0) leaves the members' std as it is."""

    a: float = 1.0
    b: float = 0.0

    def apply(self, std: np.ndarray) -> np.ndarray:
        """The calibrated std of the members' ``std`` (float64, same shape)."""
        std = np.asarray(std, dtype=np.float64)
        return np.hypot(self.a * std, self.b) if self.b > 0 else self.a * std


def fit_spread_scale(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[SpreadScale, int]:
    """The maximum-likelihood ``(a, b)`` (see the module docstring) of validation truths ``y``, ensemble means and
    members' standard deviations (any matching shapes, flattened; rows with a NaN skipped), and the number of values
    it was fitted on (rows with ``std = 0`` count: the floor covers them). No values, no error at all, or no spread
    at all (identical members: nothing to calibrate): ``SpreadScale()`` (a = 1, b = 0). Minimised with Nelder-Mead
    on ``log a, log b`` from the one-factor fit and a few floors; the one-factor fit (b = 0) and the floor alone
    (a = 0) are kept when no mixture beats them."""
    from scipy.optimize import minimize

    y, mean, std = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (y, mean, std))
    used = np.isfinite(y) & np.isfinite(mean) & np.isfinite(std) & (std >= 0)
    n = int(used.sum())
    if not n or not (std[used] > 0).any():
        return SpreadScale(), 0
    residual2 = (y[used] - mean[used]) ** 2
    scale = math.sqrt(float(residual2.mean()))
    if not scale > 0 or not math.isfinite(scale):
        return SpreadScale(), n
    r2, s2 = residual2 / scale**2, (std[used] / scale) ** 2  # in units of the rms error: both parameters near 1

    def loss(a: float, b: float) -> float:
        variance = a * a * s2 + b * b
        if not (variance > 0).all():
            return math.inf
        return float(np.mean(np.log(variance) + r2 / variance))

    factor = fit_std_factor(y[used], mean[used], std[used])[0] if (s2 > 0).all() else math.nan
    candidates = [(factor, 0.0)] if math.isfinite(factor) else []
    candidates.append((0.0, 1.0))  # the floor alone: b = rms error
    starts = [(math.log(max(a, 1e-6)), math.log(b)) for a in (factor if math.isfinite(factor) else 1.0, 1.0)
              for b in (0.03, 0.3, 1.0)]  # fmt: skip
    for start in starts:
        found = minimize(lambda p: loss(math.exp(min(p[0], 50)), math.exp(min(p[1], 50))), start,
                         method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 2000})  # fmt: skip
        candidates.append((math.exp(min(found.x[0], 50)), math.exp(min(found.x[1], 50))))
    a, b = min(candidates, key=lambda ab: loss(*ab))
    return SpreadScale(a=float(a), b=float(b * scale)), n


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
    """One task's calibration: ``factor`` (a) and ``floor`` (b, in the task's unit) fitted on ``n_val`` validation
    values, and their effect on ``n_test`` test values: shares (0..1) of truths inside mean +/- 1 and 2 std before
    (raw members' std) and after (``sqrt((a * std)^2 + b^2)``), and the Spearman correlation between |error| and std
    on the test split. A card written before the floor existed reads with floor 0."""

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
    floor: float = 0.0  # b, in the task's unit

    @property
    def scale(self) -> SpreadScale:
        return SpreadScale(a=self.factor, b=self.floor)

    def to_mapping(self) -> dict[str, float | int | None]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def calibrate_task(
    validation: tuple[np.ndarray, np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> TaskCalibration:
    """Fit a task's ``(a, b)`` on ``validation`` = (truths, ensemble means, members' std) and measure them on ``test``
    (same triple; None: no test figures)."""
    scale, n_val = fit_spread_scale(*validation)
    result = TaskCalibration(factor=scale.a, floor=scale.b, n_val=n_val)
    if test is not None:
        y, mean, std = test
        std = np.asarray(std, dtype=np.float64)
        result.n_test = int(np.isfinite(np.asarray(y, dtype=np.float64)).sum())
        result.coverage_1_before, result.coverage_2_before = (coverage(y, mean, std, k) for k in (1, 2))
        result.coverage_1_after, result.coverage_2_after = (coverage(y, mean, scale.apply(std), k) for k in (1, 2))
        result.spearman = error_spread_correlation(y, mean, std)
        if result.n_test:
            result.observed_before = observed_coverage(y, mean, std)
            result.observed_after = observed_coverage(y, mean, scale.apply(std))
    return result


def calibration_markdown(
    calibration: Mapping[str, TaskCalibration], units: Mapping[str, str] | None = None
) -> list[str]:
    """The model card's calibration section (markdown lines; ``units``: task -> unit of its floor ``b``); an empty
    mapping gives the note of an old checkpoint."""
    lines = ["## Calibration of the spread", ""]
    if not calibration:
        return lines + [f"Not calibrated: {UNCALIBRATED_NOTE}.", ""]
    units = units or {}
    lines += ["Every `_std` is sqrt((a x std)^2 + b^2): the members' standard deviation times the task's factor a, "
              "with a floor b in the task's unit, both fitted on the validation split by maximum likelihood of a "
              "normal error (Palmer et al. 2022). On the test split: the share of truths inside mean +/- 1 std and "
              "+/- 2 std (a normal error gives 68 % and 95 %), before (raw std) and after calibration, and the "
              "Spearman rank correlation between |error| and std. Classification tasks are not calibrated (a = 1, "
              "b = 0).", "",
              "| task | a (factor) | b (floor) | val n | test n | +/-1 std before | after | +/-2 std before | after | "
              "Spearman(abs error, std) |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for task, c in calibration.items():
        floor = f"{c.floor:.3g} {units.get(task, '')}".rstrip()
        lines.append(f"| {task} | {c.factor:.3g} | {floor} | {c.n_val} | {c.n_test} | {_share(c.coverage_1_before)} | "
                     f"{_share(c.coverage_1_after)} | {_share(c.coverage_2_before)} | {_share(c.coverage_2_after)} | "
                     f"{_number(c.spearman)} |")  # fmt: skip
    return lines + [""]


def _share(value: float) -> str:
    return f"{100 * value:.1f} %" if math.isfinite(value) else "n/a"


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"
