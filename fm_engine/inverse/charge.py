"""Advisory charge-balance check of a recipe (pymatgen oxidation-state guesses)."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from pymatgen.core import Composition

# Elements that form anions in ionic compounds; a recipe without any is treated as an intermetallic.
ANION_FORMERS = frozenset({"H", "C", "N", "O", "F", "P", "S", "Cl", "Se", "Br", "I", "Te"})
MAX_DENOMINATOR = 20
MAX_ELEMENTS = 6


def charge_balance(fractions: Mapping[str, float]) -> str:
    """``balanced (...)``, ``no charge-neutral assignment``, or why the check does not apply.

    Advisory only: never used to reject a recipe. Fractions are integerised (denominators up to 20).
    """
    if not ANION_FORMERS & set(fractions):
        return "not applicable (intermetallic)"
    if len(fractions) > MAX_ELEMENTS:
        return f"not checked (more than {MAX_ELEMENTS} elements)"
    ratios = {s: Fraction(v).limit_denominator(MAX_DENOMINATOR) for s, v in fractions.items()}
    denominator = 1
    for ratio in ratios.values():
        denominator = denominator * ratio.denominator // _gcd(denominator, ratio.denominator)
    amounts = {s: max(int(r * denominator), 1) for s, r in ratios.items()}
    composition = Composition(amounts)
    formula = composition.reduced_formula
    try:
        guesses = composition.oxi_state_guesses(max_sites=-50)
    except Exception as error:  # pymatgen can fail on exotic combinations: advisory only
        return f"not checked ({type(error).__name__})"
    if not guesses:
        return f"no charge-neutral assignment for {formula}"
    states = ", ".join(f"{el}{value:+g}" for el, value in guesses[0].items())
    return f"balanced as {formula} ({states})"


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
