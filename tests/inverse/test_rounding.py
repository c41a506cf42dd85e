"""Recipes rounded to their reported precision sum to exactly 1 as printed."""

from decimal import Decimal

import numpy as np

from fm_engine.inverse.rounding import round_fractions, round_recipes


def test_rounded_recipes_sum_to_one_as_printed_and_stay_within_one_unit():
    rng = np.random.default_rng(3)
    weights = np.zeros((200, 94))
    for row in weights:
        chosen = rng.choice(94, size=int(rng.integers(2, 9)), replace=False)
        row[chosen] = rng.dirichlet(np.ones(len(chosen)) * 0.5)
    rounded = round_recipes(weights, decimals=6)
    for row in rounded:
        assert sum(Decimal(f"{v:.6g}") for v in row if v > 0) == 1
    assert np.abs(rounded - weights).max() < 1e-6
    assert ((rounded > 0) <= (weights > 0)).all()  # no element appears


def test_amounts_on_the_grid_are_kept_exactly():
    """Fixed amounts and floors (e.g. Al 0.1, 0.05) survive the rounding unchanged."""
    recipe = np.array([0.1, 0.05, 0.85 / 3, 0.85 / 3, 0.85 / 3])
    rounded = round_recipes(recipe, decimals=6)
    assert rounded[0] == 0.1 and rounded[1] == 0.05


def test_round_fractions_keeps_the_order_and_sums_to_one():
    fractions = round_fractions({"Ti": 1 / 3, "Zr": 1 / 3, "Nb": 1 / 3}, decimals=3)
    assert list(fractions) == ["Ti", "Zr", "Nb"]
    assert sum(Decimal(f"{v:.3f}") for v in fractions.values()) == 1
