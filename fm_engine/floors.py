"""Lower bounds of regression targets: a property that cannot fall below a value is never predicted below it.

A band gap is never negative, and every metal's is exactly 0 eV; a network predicts a small negative gap for
many metals. A task's ``lower_bound`` setting (:class:`fm_engine.tasks.TaskSpec`) says where its predictions
stop, in the task's unit:

* ``"auto"`` (default): the training targets' minimum when at least :data:`FLOOR_SHARE` of them sit exactly at it
  (a property with a hard floor, such as the band gap: half the compositions of an experimental band-gap set are
  metals at 0 eV); otherwise no bound (a modulus or a yield strength has no such pile-up);
* ``"none"``: no bound;
* a number: that bound (e.g. ``0`` for a modulus).

The bound is fitted with the target scaling on the training split, stored in the checkpoint
(:class:`fm_engine.models.model.TargetScaler`) and applied in
:meth:`fm_engine.models.model.FlexibleMultiTaskModel.to_physical`, so predictions, the card's test metrics and
re-scored designs all see it. For any true value at or above the bound, flooring a prediction never increases
its error. Training losses and the design objective work on the raw outputs (their gradients are unchanged).

Pure numpy: the inference side imports it without the training stack.
"""

from __future__ import annotations

import math

import numpy as np

AUTO = "auto"
NONE = "none"
FLOOR_SHARE = 0.05
"""``auto``: the share of training targets that must sit exactly at their minimum for it to be a floor."""


def check_lower_bound(value: object, *, task: str) -> float | str:
    """``value`` as a valid ``lower_bound`` setting (``"auto"``, ``"none"`` or a finite number); ``ValueError``
    naming ``task`` otherwise."""
    if isinstance(value, str) and value.strip().lower() in (AUTO, NONE):
        return value.strip().lower()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"task '{task}': lower_bound: expected 'auto', 'none' or a number (in the task's unit), "
                     f"got {value!r}")  # fmt: skip


def fit_lower_bound(setting: float | str, values: np.ndarray) -> tuple[float | None, float | None]:
    """The bound for training targets ``values`` (physical units) under ``setting``, and for ``auto`` the share
    of ``values`` at it: ``(bound, share)``; ``(None, None)`` without a bound."""
    if setting == NONE:
        return None, None
    if setting != AUTO:
        return float(setting), None
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    floor = float(values.min())
    share = float(np.mean(values == floor))
    return (floor, round(share, 4)) if share >= FLOOR_SHARE else (None, None)


NON_NEGATIVE_UNITS = frozenset({"GPa", "MPa", "kPa", "Pa", "K", "W/(m K)", "W/mK", "J/(mol K)", "J/(mol-atom K)",
                                "Å^3/atom", "g/cm^3"})  # fmt: skip
"""Units of quantities that are never negative (a modulus, a strength, an absolute temperature, a conductivity, a
heat capacity, a volume, a density); a logarithm's unit (``log10(GPa)``) is not among them."""
NON_NEGATIVE_NAMES = ("band_gap", "energy_above_hull")
"""Parts of task names whose quantity is never negative although its unit (eV, eV/atom) can be."""


def physical_minimum(*, name: str, unit: str, bound: float | None) -> float | None:
    """The value below which a prediction of task ``name`` (in ``unit``) is physically impossible: the task's lower
    bound ``bound`` when it has one, else 0 for a quantity that is never negative (its unit in
    :data:`NON_NEGATIVE_UNITS` or its name containing one of :data:`NON_NEGATIVE_NAMES`), else None (no minimum)."""
    if bound is not None:
        return float(bound)
    if (unit or "").strip() in NON_NEGATIVE_UNITS or any(part in name for part in NON_NEGATIVE_NAMES):
        return 0.0
    return None
