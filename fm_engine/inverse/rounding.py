"""Recipes at the precision they are reported: atomic fractions rounded so that each recipe sums to exactly 1.

A design reports (recipes.csv, results.json, the results table) and re-scores the rounded recipe, so the numbers
beside a recipe are those of the recipe as written. Largest-remainder rounding: every fraction is rounded down or
up to the grid, and the units left over go to the largest remainders, so the printed fractions add up to 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

RECIPE_DECIMALS = 6  # atomic fractions in a design's results: 1e-6 = 0.0001 at.%
FORMULA_DECIMALS = 3  # the formula label (Mo0.637W0.263Al0.100), as compositions.format_formula prints it


def round_recipes(weights: np.ndarray, *, decimals: int = RECIPE_DECIMALS) -> np.ndarray:
    """Rows of non-negative amounts -> atomic fractions on a ``10**-decimals`` grid, each row summing to exactly 1
    at that precision (an amount below the grid may round to 0 and leave the recipe). Shape kept."""
    w = np.asarray(weights, dtype=np.float64)
    rows = np.atleast_2d(w)
    units = 10**decimals
    scaled = rows / rows.sum(axis=1, keepdims=True) * units
    counts = np.floor(scaled)
    remainder = scaled - counts
    missing = (units - counts.sum(axis=1)).round().astype(int)  # 0 <= missing < number of elements
    order = np.argsort(-remainder, axis=1, kind="stable")
    for row, n in enumerate(missing):
        counts[row, order[row, :n]] += 1
    return (counts / units).reshape(w.shape)


def round_fractions(fractions: Mapping[str, float], *, decimals: int = FORMULA_DECIMALS) -> dict[str, float]:
    """``{symbol: fraction}`` rounded as :func:`round_recipes` (summing to 1 at ``decimals``), same order."""
    rounded = round_recipes(np.array(list(fractions.values()), dtype=float), decimals=decimals)
    return dict(zip(fractions, (float(v) for v in rounded), strict=True))
