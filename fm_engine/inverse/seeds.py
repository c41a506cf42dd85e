"""Where designs start: training compositions (best by objective or random), explicit formulas, or
random points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.compositions import parse_many
from fm_engine.config import check_range
from fm_engine.elements import element_index
from fm_engine.field_docs import documented, with_field_docs
from fm_engine.inverse.composition import DesignObjective
from fm_engine.inverse.constraints import DesignConstraints
from fm_engine.inverse.targets import Target

MAX_SEEDS = 10_000  # seeds or random starts of one design run
SPLITS = ("all", "train", "val", "test")  # the splits data seeds may come from


@with_field_docs
@dataclass
class SeedConfig:
    """Where a design's starts come from."""

    source: Literal["data", "formulas", "random"] = documented(
        default="data",
        help="data = the checkpoint's training compositions; formulas = your seed formulas; random = random "
        "start points.",
    )
    n: int = documented(
        default=16, help=f"Number of seeds (data) or random starts (random), 1 to {MAX_SEEDS:,}; formulas: one "
        "start per formula.",
    )  # fmt: skip
    strategy: Literal["best", "random"] = documented(
        default="best",
        help="data: best = the n compositions with the lowest objective, one per element system; random = n "
        "compositions drawn at random (random_seed).",
    )
    split: str = documented(default="all", help=f"data: the compositions of which split: {', '.join(SPLITS)}.")
    formulas: list[str] = documented(default_factory=list, help="formulas: the seed formulas, one start each.")

    def __post_init__(self) -> None:
        if self.source not in ("data", "formulas", "random"):
            raise ValueError(f"seeds.source must be data, formulas or random, not '{self.source}'")
        if self.strategy not in ("best", "random"):
            raise ValueError(f"seeds.strategy must be best or random, not '{self.strategy}'")
        check_range("seeds.n", self.n, low=1, high=MAX_SEEDS)
        if self.split not in SPLITS:
            raise ValueError(f"seeds.split: expected one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.source == "formulas" and not self.formulas:
            raise ValueError("seeds.source 'formulas' needs seeds.formulas")


def formula_seeds(formulas: Sequence[str]) -> np.ndarray:
    batch = parse_many(formulas)
    if batch.n_bad:
        first = batch.bad.iloc[0]
        raise ValueError(f"seed formula {first['row'] + 1}: {first['reason']}")
    return batch.weights


def data_seeds(
    checkpoint: LoadedCheckpoint,
    config: SeedConfig,
    targets: Sequence[Target],
    constraints: DesignConstraints,
    *,
    random_seed: int = 0,
) -> np.ndarray:
    """Seed weight rows from the training compositions, preferring those made only of allowed elements."""
    pool = checkpoint.compositions()
    if config.split != "all":
        pool = pool[pool["split"] == config.split]
    if pool.empty:
        raise ValueError("the checkpoint records no training compositions to seed from; use formulas or random")
    batch = parse_many(pool["composition"].tolist())
    weights = batch.weights
    allowed = constraints.allowed_mask()
    inside = (weights[:, ~allowed] == 0).all(axis=1)
    if inside.sum() >= config.n:
        weights = weights[inside]
    else:  # not enough compositions from the palette: seeds are renormalised onto the allowed elements
        touching = weights[:, allowed].sum(axis=1) > 0
        weights = weights[touching]
        weights = np.where(allowed, weights, 0.0)
        weights = weights / weights.sum(axis=1, keepdims=True)
    if len(weights) == 0:
        raise ValueError("no training composition contains any allowed element; use random seeds")
    if config.strategy == "random":
        rng = np.random.default_rng(random_seed)
        chosen = rng.choice(len(weights), size=min(config.n, len(weights)), replace=False)
        return weights[chosen]
    objective = DesignObjective.of_checkpoint(checkpoint, targets, 1.0)
    scores = []
    with torch.no_grad():
        for member in objective.models:
            member.eval()
        for start in range(0, len(weights), 4096):
            w = torch.as_tensor(weights[start : start + 4096], dtype=torch.float32)
            scores.append(objective.terms(w).sum(dim=1).numpy())
    order = np.argsort(np.concatenate(scores), kind="stable")
    chosen, systems = [], set()
    for i in order:
        system = frozenset(np.flatnonzero(weights[i]))
        if system in systems:
            continue
        systems.add(system)
        chosen.append(i)
        if len(chosen) == config.n:
            break
    return weights[chosen]


def random_seeds(constraints: DesignConstraints, n: int, *, random_seed: int = 0, size: int = 4) -> np.ndarray:
    """``n`` random seed rows, each of its own random element system: ``max_elements`` (else ``size``) allowed
    elements, the fixed ones among them, in random amounts (a flat Dirichlet). Starts from such seeds reach
    element systems the data seeds and the near-even random starts do not."""
    rng = np.random.default_rng(random_seed)
    index = element_index()
    allowed = np.flatnonzero(constraints.allowed_mask())
    fixed = [index[s] for s in constraints.fixed_amounts]
    others = np.setdiff1d(allowed, fixed)
    k = min(max((constraints.max_elements or size) - len(fixed), 1), len(others))
    rows = np.zeros((n, len(index)))
    for row in rows:
        chosen = rng.choice(others, size=k, replace=False)
        row[chosen] = rng.dirichlet(np.ones(k))
    return rows
