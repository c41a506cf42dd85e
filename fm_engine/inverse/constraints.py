"""Design constraints on recipes: validation before a run and verification on every final recipe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fm_engine.config import check_range
from fm_engine.elements import element_index, element_symbols
from fm_engine.field_docs import documented, with_field_docs

# Presets for allowed_elements (symbols are checked against the element table at import time).
ALLOY_PALETTE = (
    "Mg Ca B Al Ga In Si Ge Sc Ti V Cr Mn Fe Co Ni Cu Zn Y Zr Nb Mo Ru Rh Pd Ag Hf Ta W Re Ir Pt Au La Ce Nd Gd Sn"
).split()
TOXIC = ("Be", "Cd", "Hg", "Pb", "As", "Tl", "Se", "Te", "Po", "Sb")
RADIOACTIVE = ("Tc", "Pm", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu")
# EU critical raw materials (Critical Raw Materials Act 2024, Annex II, elements only): avoided by "no_critical".
CRITICAL = (
    "Al Sb As Ba Be Bi B Co Cu Ga Ge Hf He Li Mg Mn Nb Ni P Sc Si Sr Ta Ti W V "
    "La Ce Pr Nd Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Y Pt Pd Ir Rh Ru Os"
).split()
NOBLE_GASES = ("He", "Ne", "Ar", "Kr", "Xe", "Rn")
NON_METALS = ("H", "C", "N", "O", "F", "P", "S", "Cl", "Se", "Br", "I", *NOBLE_GASES)  # gases, halogens, C, P, S, Se
PRESET_DESCRIPTIONS = {
    "all": "every element H-Pu, gases, halogens and radioactive elements included (for compounds: oxides, "
    "nitrides, halides)",
    "alloy_palette": "38 common alloying elements: metals, rare earths, B, Si, Ge (no gases, halogens or other "
    "non-metals)",
    "no_toxic_no_radioactive": "metals and metalloids for alloys, without toxic (Be, Cd, Hg, Pb, Tl, As, Sb, Te) or "
    "radioactive elements (no gases, halogens or other non-metals)",
    "no_critical": "no_toxic_no_radioactive without the EU critical raw materials (e.g. Al, Co, Ni, Ti, Nb, W, "
    "rare earths, platinum metals): metals for alloys, no gases, halogens or other non-metals",
}
"""What each preset is for, in one line (the Design page's preset buttons, ``fm design --help``)."""


def element_presets() -> dict[str, list[str]]:
    """Named element palettes for ``allowed_elements`` (their meanings: :data:`PRESET_DESCRIPTIONS`)."""
    everything = list(element_symbols())
    metals = [e for e in everything if e not in NON_METALS]  # metals and the metalloids B, Si, Ge, As, Sb, Te
    safe = [e for e in metals if e not in TOXIC + RADIOACTIVE]
    return {
        "all": everything,
        "alloy_palette": list(ALLOY_PALETTE),
        "no_toxic_no_radioactive": safe,
        "no_critical": [e for e in safe if e not in CRITICAL],
    }


@with_field_docs
@dataclass
class DesignConstraints:
    """Hard constraints on every final recipe (allowed elements, element cap, fixed amounts, floor) and the knobs
    of the descent (annealing, per-element step, seed blend, diversity). Amounts are atomic fractions (0.1 =
    10 at.%)."""

    allowed_elements: list[str] | str = documented(
        default="all",
        help="The elements a recipe may contain (a hard whitelist): a list of symbols or a preset: "
        + "; ".join(f"{name} = {meaning}" for name, meaning in PRESET_DESCRIPTIONS.items())
        + ".",
    )
    max_elements: int | None = documented(
        default=None,
        help="At most this many elements in a recipe, fixed and locked ones included; null (0 on the form) = no cap.",
    )
    annealing_scale: float = documented(
        default=0.5,
        help="How late the element cap (max_elements) bites, in [0, 1]: the soft top-K membership starts at "
        "temperature 25**annealing_scale and cools to 0.01. 0: starts at 1, the cap bites from the first steps; "
        "1: starts at 25, all allowed elements compete freely at first. No effect without max_elements.",
    )
    fixed_amounts: dict[str, float] = documented(
        default_factory=dict,
        help="{symbol: atomic fraction in (0, 1)}, exact in every final recipe, e.g. {Al: 0.1} = 10 at.% Al.",
    )
    min_nonzero_weight: float = documented(
        default=0.02,
        help="The smallest atomic fraction an element present in a recipe may have, in [0, 1) (0.02 = 2 at.%, "
        "the default: an element is either really in the recipe or absent, no trace amounts such as Cr0.005 that "
        "are below what a recipe is weighed out to and what the model was trained on). Lower it (0.01 = 1 at.%) "
        "to allow dopant-level amounts; 0 = no floor (amounts under 0.1 at.% are still dropped).",
    )
    element_step_scale: float | dict[str, float] = documented(
        default=1.0,
        help="How fast an element's amount may change, in [0, 1]: one number for every element or {symbol: "
        "scale}. 1 = full speed; 0.2 = each step moves the amount a fifth as far; 0 = locked at its seed "
        "amount (needs seeds). Scales the optimiser's update, not the gradient; composition method only.",
    )
    seed_blend: float = documented(
        default=0.95,
        help="Share of the seed in each start, in [0, 1]: start = seed_blend * seed + (1 - seed_blend) * "
        "uniform over the allowed elements. 1 = start at the seed itself (no element outside the seed can "
        "enter); 0 = ignore the seeds (uniform start). Composition method with seeds only.",
    )
    diversity_scale: float = documented(
        default=1.0,
        help="How freely elements mix, in [0, 1]: (1 - diversity_scale) x the recipe's mixing entropy (nats) "
        "is added to the objective. 1 = no penalty (many-element mixtures are fine); 0 = full penalty, "
        "favouring recipes with few elements. Composition method only.",
    )
    max_distance: float | None = documented(
        default=None,
        help="Every recipe within this distance of the training compositions, in (0, 1]: the fraction of atoms "
        "that differ from the nearest one (the distance_to_training column; 0.2 = at most 20 % of the atoms "
        "differ). Steered toward during the descent (composition method) and verified on every final recipe; "
        "null (0 on the form) = no limit.",
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ resolved views
    def allowed(self) -> list[str]:
        if isinstance(self.allowed_elements, str):
            presets = element_presets()
            if self.allowed_elements not in presets:
                raise ValueError(f"unknown element preset '{self.allowed_elements}' (presets: {', '.join(presets)})")
            return presets[self.allowed_elements]
        return list(dict.fromkeys(str(s).strip() for s in self.allowed_elements))

    def allowed_mask(self) -> np.ndarray:
        mask = np.zeros(len(element_symbols()), dtype=bool)
        mask[[element_index()[s] for s in self.allowed()]] = True
        return mask

    def step_scales(self) -> np.ndarray:
        """Per-element update scale over the element table (1 where not given)."""
        scales = np.ones(len(element_symbols()))
        if isinstance(self.element_step_scale, Mapping):
            for symbol, value in self.element_step_scale.items():
                scales[element_index()[symbol]] = float(value)
        else:
            scales[:] = float(self.element_step_scale)
        return scales

    def locked_elements(self) -> list[str]:
        if isinstance(self.element_step_scale, Mapping):
            return [s for s, v in self.element_step_scale.items() if float(v) == 0.0]
        return []

    # ------------------------------------------------------------------ validation
    def validate(self, *, has_seeds: bool = True) -> None:
        """Raise ``ValueError`` naming the conflict for contradictory or impossible settings."""
        index = element_index()

        def check_symbols(symbols: Sequence[str], where: str) -> None:
            unknown = [s for s in symbols if s not in index]
            if unknown:
                raise ValueError(f"{where}: unknown element symbol(s) {', '.join(map(str, unknown))}")

        allowed = self.allowed()
        check_symbols(allowed, "allowed_elements")
        if not allowed:
            raise ValueError("allowed_elements is empty")
        check_symbols(list(self.fixed_amounts), "fixed_amounts")
        if isinstance(self.element_step_scale, Mapping):
            check_symbols(list(self.element_step_scale), "element_step_scale")
            bad = {s: v for s, v in self.element_step_scale.items() if not 0.0 <= float(v) <= 1.0}
        else:
            bad = {"all": self.element_step_scale} if not 0.0 <= float(self.element_step_scale) <= 1.0 else {}
        if bad:
            raise ValueError(f"element_step_scale must be in [0, 1], got {bad}")
        if isinstance(self.element_step_scale, int | float) and float(self.element_step_scale) == 0.0:
            raise ValueError("element_step_scale 0 for every element locks the whole recipe: nothing to design")
        locked = self.locked_elements()
        if locked and not has_seeds:
            raise ValueError(f"element_step_scale 0 locks {', '.join(locked)} at its seed amount: give seeds")
        overlap = sorted(set(locked) & set(self.fixed_amounts))
        if overlap:
            raise ValueError(f"{', '.join(overlap)}: both in fixed_amounts and locked by element_step_scale 0")
        outside = [s for s in list(self.fixed_amounts) + locked if s not in allowed]
        if outside:
            raise ValueError(f"fixed/locked element(s) {', '.join(outside)} not in allowed_elements")
        for symbol, amount in self.fixed_amounts.items():
            if not 0.0 < float(amount) < 1.0:
                raise ValueError(f"fixed amount of {symbol} must be between 0 and 1, got {amount}")
        fixed_total = float(sum(self.fixed_amounts.values()))
        if fixed_total >= 1.0 - 1e-9:
            raise ValueError(
                f"fixed_amounts sum to {fixed_total:.3f}: they must leave room (< 1) for the designed elements"
            )
        n_fixed = len(self.fixed_amounts) + len(locked)
        if len(allowed) <= n_fixed:
            raise ValueError("allowed_elements has no element left to design besides the fixed/locked ones")
        if self.max_elements is not None:
            k = int(self.max_elements)
            if k < 1:
                raise ValueError(f"max_elements must be >= 1, got {k}")
            if k <= n_fixed:
                raise ValueError(
                    f"max_elements {k} leaves no room: {n_fixed} element(s) are already fixed or locked "
                    f"({', '.join(list(self.fixed_amounts) + locked)})"
                )
            if k > len(allowed):
                raise ValueError(f"max_elements {k} is larger than the {len(allowed)} allowed elements")
        floor = float(self.min_nonzero_weight)
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"min_nonzero_weight must be in [0, 1), got {floor}")
        if self.max_elements is not None and floor > 1.0 / int(self.max_elements) + 1e-12:
            raise ValueError(f"min_nonzero_weight {floor} is above 1/max_elements = {1 / int(self.max_elements):.3f}")
        below = {s: a for s, a in self.fixed_amounts.items() if float(a) < floor}
        if below:
            raise ValueError(f"min_nonzero_weight {floor} is above fixed amount(s) {below}")
        if floor > 0 and 1.0 - fixed_total < floor - 1e-12:
            raise ValueError(
                f"fixed_amounts leave {1 - fixed_total:.3f} for the designed elements, "
                f"less than min_nonzero_weight {floor}"
            )
        if not 0.0 <= self.annealing_scale <= 1.0:
            raise ValueError(f"annealing_scale must be in [0, 1], got {self.annealing_scale}")
        if not 0.0 <= self.seed_blend <= 1.0:
            raise ValueError(f"seed_blend must be in [0, 1], got {self.seed_blend}")
        if not 0.0 <= self.diversity_scale <= 1.0:
            raise ValueError(f"diversity_scale must be in [0, 1], got {self.diversity_scale}")
        check_range("max_distance", self.max_distance, low=0.0, low_open=True, high=1.0)

    # ------------------------------------------------------------------ verification
    def check_recipe(
        self,
        weights: np.ndarray,
        *,
        locked_amounts: Mapping[str, float] | None = None,
        distance_to_training: float | None = None,
    ) -> list[str]:
        """Every hard constraint checked on a final recipe; returns the violations (empty = satisfied).
        ``distance_to_training``: the recipe's distance to the nearest training composition (needed with
        ``max_distance``)."""
        w = np.asarray(weights, dtype=np.float64)
        symbols = element_symbols()
        index = element_index()
        problems = []
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            problems.append("negative or non-finite fraction")
        if abs(w.sum() - 1.0) > 1e-6:
            problems.append(f"fractions sum to {w.sum():.6f}, not 1")
        present = np.flatnonzero(w > 0)
        allowed = set(self.allowed())
        outside = [symbols[i] for i in present if symbols[i] not in allowed]
        if outside:
            problems.append(f"element(s) not allowed: {', '.join(outside)}")
        if self.max_elements is not None and len(present) > self.max_elements:
            problems.append(f"{len(present)} elements > max_elements {self.max_elements}")
        for symbol, amount in {**self.fixed_amounts, **(locked_amounts or {})}.items():
            if abs(w[index[symbol]] - float(amount)) > 1e-6:
                problems.append(f"{symbol} is {w[index[symbol]]:.6f}, fixed at {float(amount):.6f}")
        floor = float(self.min_nonzero_weight)
        small = [f"{symbols[i]} {w[i]:.4f}" for i in present if w[i] < floor - 1e-6]  # 1e-6: a reported recipe's grid
        if small:
            problems.append(f"below min_nonzero_weight {floor}: {', '.join(small)}")
        if self.max_distance is not None:
            if distance_to_training is None:
                raise ValueError("max_distance: checking a recipe needs its distance to the training compositions")
            if not distance_to_training <= float(self.max_distance) + 1e-9:
                problems.append(f"distance to training {distance_to_training:.4f} > max_distance {self.max_distance:g}")
        return problems
