"""Advisory charge-balance check of a recipe, on its real atomic fractions, with pymatgen's oxidation states.

Each element may take one of the oxidation states pymatgen prefers for it (``Element.icsd_oxidation_states``, the
states seen in the ICSD, else ``Element.oxidation_states``); one element may also be of mixed valence between two of
its states of the same sign (Fe3O4: Fe2.67+). A recipe is balanced when some assignment leaves a net charge of at
most :data:`NET_CHARGE_TOLERANCE` elementary charges per atom. Advisory only: never used to reject a recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, lru_cache

import numpy as np
from pymatgen.core import Element

# Elements that form anions in ionic compounds; a recipe without any is treated as an intermetallic.
ANION_FORMERS = frozenset({"H", "C", "N", "O", "F", "P", "S", "Cl", "Se", "Br", "I", "Te"})
MAX_ELEMENTS = 8
NET_CHARGE_TOLERANCE = 0.02  # e per atom: about 1 at.% of oxygen in an oxide (a designed recipe is never exact)
MAX_ASSIGNMENTS = 200_000  # oxidation-state combinations enumerated at most (beyond: "not checked")
CACHE_DECIMALS = 6  # recipes equal at this precision share one cached answer


def charge_balance(fractions: Mapping[str, float]) -> str:
    """``balanced (Fe3+, Si4+, O2-)``, ``not balanced (closest Fe3+, Si4+, O2-: net charge -0.585 e per atom)``,
    ``not applicable (intermetallic)`` for a recipe without an anion former, or ``not checked (...)``.

    ``fractions``: {symbol: atomic fraction}; they are normalised to sum to 1. Cations are listed first, then
    anions, each in the recipe's order."""
    key = tuple((s, round(float(v), CACHE_DECIMALS)) for s, v in fractions.items() if float(v) > 0)
    return _charge_balance(key)


@lru_cache(maxsize=4096)
def _charge_balance(recipe: tuple[tuple[str, float], ...]) -> str:
    symbols = [s for s, _ in recipe]
    if not ANION_FORMERS & set(symbols):
        return "not applicable (intermetallic)"
    if len(symbols) > MAX_ELEMENTS:
        return f"not checked (more than {MAX_ELEMENTS} elements)"
    amounts = np.array([v for _, v in recipe])
    amounts = amounts / amounts.sum()
    states = [oxidation_states(s) for s in symbols]
    if any(not s for s in states):
        missing = [s for s, st in zip(symbols, states, strict=True) if not st]
        return f"not checked (no oxidation states known for {', '.join(missing)})"
    if int(np.prod([len(s) for s in states])) > MAX_ASSIGNMENTS:
        return "not checked (too many oxidation-state combinations)"
    grid = np.stack(np.meshgrid(*[np.arange(len(s)) for s in states], indexing="ij"), axis=-1).reshape(-1, len(states))
    combos = np.column_stack([np.array(s, dtype=float)[grid[:, e]] for e, s in enumerate(states)])  # (assignments, el.)
    net = combos @ amounts  # e per atom
    common = np.column_stack(
        [
            np.array([q in common_states(symbol) for q in s])[grid[:, e]]
            for e, (symbol, s) in enumerate(zip(symbols, states, strict=True))
        ]
    )
    # the most common states first, then the smallest net charge, then the smallest charges
    order = np.lexsort((np.abs(combos).sum(axis=1), np.abs(net), -common.sum(axis=1)))
    balanced = [i for i in order if abs(net[i]) <= NET_CHARGE_TOLERANCE]
    if balanced:
        return f"balanced ({_describe(symbols, combos[balanced[0]])})"
    mixed = _mixed_valence(amounts, states, combos, net, order)
    if mixed is not None:
        return f"balanced ({_describe(symbols, mixed)})"
    closest = min(order, key=lambda i: abs(net[i]))
    return f"not balanced (closest {_describe(symbols, combos[closest])}: net charge {net[closest]:+.3f} e per atom)"


def _mixed_valence(
    amounts: np.ndarray, states: list[tuple[int, ...]], combos: np.ndarray, net: np.ndarray, order: np.ndarray
) -> np.ndarray | None:
    """An assignment where one element's average state, between two of its states of the same sign, balances the
    rest exactly (the first such in ``order``); None if there is none."""
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    best: tuple[int, int, float] | None = None  # (rank, element, its average state)
    for e, symbol_states in enumerate(states):
        needed = combos[:, e] - net / amounts[e]
        ok = np.zeros(len(needed), dtype=bool)
        for sign in (1, -1):
            same = [q for q in symbol_states if q * sign > 0]
            if len(same) >= 2:
                ok |= (needed > min(same)) & (needed < max(same))
        if ok.any():
            i = int(np.flatnonzero(ok)[np.argmin(rank[ok])])
            if best is None or rank[i] < best[0]:
                best = (int(rank[i]), e, float(needed[i]))
    if best is None:
        return None
    assignment = combos[order[best[0]]].copy()
    assignment[best[1]] = best[2]
    return assignment


@cache
def oxidation_states(symbol: str) -> tuple[int, ...]:
    """The oxidation states pymatgen's ``oxi_state_guesses`` tries for an element: those seen in the ICSD, else all
    known ones (noble gases: none)."""
    element = Element(symbol)
    return tuple(sorted(set(element.icsd_oxidation_states or element.oxidation_states)))


@cache
def common_states(symbol: str) -> frozenset[int]:
    return frozenset(Element(symbol).common_oxidation_states)


def _describe(symbols: list[str], assignment: np.ndarray) -> str:
    """``Fe3+, Si4+, O2-``: cations first, then anions, each in the recipe's order (a mixed valence as Fe2.67+)."""
    cations = [(s, q) for s, q in zip(symbols, assignment, strict=True) if q >= 0]
    anions = [(s, q) for s, q in zip(symbols, assignment, strict=True) if q < 0]
    return ", ".join(f"{s}{_charge(q)}" for s, q in cations + anions)


def _charge(q: float) -> str:
    magnitude = abs(float(q))
    text = "" if magnitude == 1 else f"{magnitude:.3g}" if magnitude != round(magnitude) else f"{magnitude:.0f}"
    return f"{text}{'-' if q < 0 else '+'}" if magnitude else "0"
