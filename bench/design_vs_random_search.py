"""Benchmark: gradient-based design vs random search over the same allowed elements.

Both are given the same budget of model evaluations (gradient: rows x steps forward passes, every step's
weights a valid recipe over the allowed elements, best over the trajectory; random:
that many random recipes, Dirichlet fractions over a random subset of the allowed elements). Reported:
the best objective each reaches, and how many evaluations the gradient path needed to match random
search's best (goal: >= 10x fewer than the search used).
Scenarios on the demo model over the 38-element alloy palette: value targets and a value + class target.
Run: ``.venv/bin/python bench/design_vs_random_search.py [--checkpoint RUN]``; writes JSON to bench/results.
"""

from __future__ import annotations

import time

import numpy as np
from _common import write_result
from design_speed import setup_from_cli

from fm_engine.inverse import DesignConfig, DesignConstraints, SeedConfig, Target, optimize_composition
from fm_engine.inverse.design import objective_of

ROWS, STEPS = 8, 1200  # a budget of 9,600 model evaluations: a few starts, many steps


def random_recipes(allowed: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    recipes = np.zeros((n, len(allowed)))
    candidates = np.flatnonzero(allowed)
    for row in recipes:
        chosen = rng.choice(candidates, size=rng.integers(1, 7), replace=False)
        row[chosen] = rng.dirichlet(np.ones(len(chosen)))
    return recipes


SCENARIOS = {
    "bulk modulus = 300 GPa": [Target(task="bulk_modulus", value=300.0)],
    "bulk 250 GPa + shear 150 GPa": [
        Target(task="bulk_modulus", value=250.0),
        Target(task="shear_modulus", value=150.0),
    ],
    "bulk 350 GPa + P(BCC) up": [Target(task="bulk_modulus", value=350.0), Target(task="hea_phase", classes=["BCC"])],
}


def compare(checkpoint, targets: list[Target], constraints: DesignConstraints) -> dict[str, float | int | None]:  # noqa: ANN001
    budget = ROWS * STEPS
    start = time.perf_counter()
    config = DesignConfig(targets=targets, constraints=constraints, seeds=SeedConfig(n=ROWS), steps=STEPS,
                          record_trajectory=True, polish_fraction=0.0)  # fmt: skip
    run = optimize_composition(checkpoint.model, config)
    gradient_seconds = time.perf_counter() - start
    best_by_step = np.minimum.accumulate([min(record["objective"]) for record in run.trajectory])
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    scores = np.concatenate([
        objective_of(checkpoint, targets, random_recipes(constraints.allowed_mask(), 4096, rng))
        for _ in range(int(np.ceil(budget / 4096)))
    ])[:budget]  # fmt: skip
    random_seconds = time.perf_counter() - start
    random_best = float(scores.min())
    reached = np.flatnonzero(best_by_step <= random_best)
    needed = int((reached[0] + 1) * ROWS) if len(reached) else None
    return {
        "budget": budget, "gradient_best": float(best_by_step[-1]),
        "gradient_final_recipes_best": float(objective_of(checkpoint, targets, run.weights).min()),
        "random_best": random_best, "evaluations_needed": needed, "ratio": budget / needed if needed else None,
        "gradient_seconds": gradient_seconds, "random_seconds": random_seconds,
    }  # fmt: skip


def main() -> None:
    env, checkpoint = setup_from_cli()
    constraints = DesignConstraints(allowed_elements="alloy_palette")
    print(f"budget: {ROWS * STEPS} model evaluations each ({ROWS} rows x {STEPS} steps for the gradient path)")
    results = {}
    for name, targets in SCENARIOS.items():
        r = results[name] = compare(checkpoint, targets, constraints)
        matched = (f"matched the search's best after {r['evaluations_needed']} evaluations: {r['ratio']:.1f}x fewer"
                   if r["ratio"] else "never matched the search's best")  # fmt: skip
        print(f"{name}: best objective gradient {r['gradient_best']:.3g} vs random search {r['random_best']:.3g}; "
              f"gradient {matched} (goal >= 10x)")  # fmt: skip
    write_result("design_vs_random_search", {"environment": env, "scenarios": results})


if __name__ == "__main__":
    main()
