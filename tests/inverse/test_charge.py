"""The advisory charge-balance check on fractional recipes: oxides, nitrides, halides; intermetallics skipped."""

import re

import numpy as np
import pytest

from fm_engine.inverse import charge
from fm_engine.inverse.charge import charge_balance


def net_charge(fractions: dict[str, float], states: dict[str, float]) -> float:
    return sum(fractions[s] * states[s] for s in fractions) / sum(fractions.values())


def test_the_oxide_of_the_issue_is_checked_and_reported_with_its_net_charge():
    """O0.718Fe0.277Si0.005 said "not checked (ValueError)": it is oxygen-rich even with Fe3+ and Si4+."""
    recipe = {"O": 0.718, "Fe": 0.277, "Si": 0.005}
    answer = charge_balance(recipe)
    assert answer.startswith("not balanced (closest Fe3+, Si4+, O2-: net charge ")
    expected = net_charge(recipe, {"Fe": 3, "Si": 4, "O": -2})
    reported = float(re.search(r"net charge ([-+0-9.]+) e per atom", answer).group(1))
    assert reported == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(
    ("recipe", "states"),
    [
        ({"Fe": 0.4013, "O": 0.5987}, "Fe3+, O2-"),  # a designed Fe2O3, not exact: within the tolerance
        ({"Fe": 0.2, "Si": 0.2, "O": 0.6}, "Fe2+, Si4+, O2-"),  # FeSiO3
        ({"Ga": 0.5, "N": 0.5}, "Ga3+, N3-"),  # a nitride
        ({"Na": 0.5, "Cl": 0.5}, "Na+, Cl-"),  # a halide
        ({"Ca": 1 / 3, "F": 2 / 3}, "Ca2+, F-"),
        ({"Ba": 0.2, "Ti": 0.2, "O": 0.6}, "Ba2+, Ti4+, O2-"),
        ({"Fe": 3 / 7, "O": 4 / 7}, "Fe2.67+, O2-"),  # Fe3O4: mixed valence
    ],
)
def test_fractional_compounds_are_balanced_with_their_usual_states(recipe, states):
    assert charge_balance(recipe) == f"balanced ({states})"
    assigned = {m.group(1): float(m.group(2) or 1) * (1 if m.group(3) == "+" else -1)
                for m in re.finditer(r"([A-Z][a-z]?)([0-9.]*)([+-])", states)}  # fmt: skip
    assert abs(net_charge(recipe, assigned)) <= charge.NET_CHARGE_TOLERANCE + 1e-3


@pytest.mark.parametrize("recipe", [{"Na": 0.2, "Cl": 0.8}, {"Fe": 0.3, "O": 0.7}, {"Ca": 0.2, "F": 0.8}])
def test_anion_rich_recipes_are_not_balanced(recipe):
    assert charge_balance(recipe).startswith("not balanced (closest ")


@pytest.mark.parametrize("recipe", [{"Ti": 0.9, "Al": 0.1}, {"Fe": 0.5, "Ni": 0.5}, {"Ta": 0.9, "Al": 0.1}])
def test_intermetallics_are_not_applicable(recipe):
    assert charge_balance(recipe) == "not applicable (intermetallic)"


def test_random_oxides_always_get_an_answer():
    """Never an exception's name: every recipe of up to 6 elements with oxygen gets a verdict."""
    rng = np.random.default_rng(0)
    metals = ["Fe", "Si", "Al", "Ti", "Mn", "Co", "Ni", "Cu", "Zn", "Mg", "Ca", "La", "W", "Ta"]
    for _ in range(50):
        chosen = list(rng.choice(metals, size=int(rng.integers(1, 6)), replace=False)) + ["O"]
        amounts = rng.dirichlet(np.ones(len(chosen)))
        answer = charge_balance(dict(zip(chosen, amounts, strict=True)))
        assert answer.startswith(("balanced (", "not balanced (closest ")), answer
