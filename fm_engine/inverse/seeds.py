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
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Seed weight rows from the training compositions, preferring those made only of allowed elements.
    ``exclude``: weight rows already used (a design's earlier starts): compositions of their element systems are
    not drawn again. Returns fewer than ``config.n`` rows (maybe none) when the compositions run out."""
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
    if exclude is not None and len(exclude):
        used = {frozenset(np.flatnonzero(row > 0)) for row in exclude if np.isfinite(row).all()}
        weights = weights[[frozenset(np.flatnonzero(row > 0)) not in used for row in weights]]
        if len(weights) == 0:
            return weights
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
