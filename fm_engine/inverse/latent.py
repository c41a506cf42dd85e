"""Design in the model's latent space (``optimize_latent``), then recover a real composition.

Adam descends on the pre-tanh latent ``h`` with ``objective(tanh h) + ae_align_scale *
mean((tanh(E(D(tanh h))) - tanh h)^2)``: the second term keeps ``h`` near the autoencoder's manifold
(``D`` the autoencoder head, ``E`` the encoder). The decoded descriptor ``D(tanh h)`` is turned into a
recipe by non-negative least squares against the KMD kernel (``x = w @ K``) over the allowed elements,
with the fixed amounts subtracted first, then sparsified (``max_elements``, ``min_nonzero_weight``,
trace fractions) by re-solving on the kept support. The recipe is re-scored by a plain forward pass by
the caller: the latent's score and the recipe's score are both reported, and recipes are ranked by the
recipe's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.optimize import nnls

from fm_engine.descriptors import Descriptor
from fm_engine.elements import element_index, element_symbols
from fm_engine.inverse.constraints import DesignConstraints
from fm_engine.inverse.descent import ProgressCallback, evaluating, set_gradient, start_rows, trajectory_point
from fm_engine.inverse.targets import curve_points, target_terms, validate_targets
from fm_engine.models import FlexibleMultiTaskModel

if TYPE_CHECKING:
    from fm_engine.inverse.design import DesignConfig

SUM_PENALTY = 10.0  # weight of the sum-to-(free mass) row in the least-squares system
RECOVERY_TRACE = 0.01  # recovered fractions below 1 at.% are dropped (NNLS spreads mass thinly)
ALIGNMENT_TERM = "autoencoder alignment"  # the trajectory's name of the pull toward the autoencoder's manifold


@dataclass
class LatentRun:
    weights: np.ndarray  # (B, 94) recovered recipes
    seeds: np.ndarray | None
    latent_objective: np.ndarray  # (B,) objective (targets only) at the final latent
    decoded: np.ndarray  # (B, D) decoded descriptors
    trajectory: list[dict[str, list[float]]] = field(default_factory=list)


def optimize_latent(
    model: FlexibleMultiTaskModel,
    config: DesignConfig,
    *,
    seeds: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
) -> LatentRun:
    """Design for ``config`` (its targets, constraints, steps, lr, random seed, ae_align_scale) in the model's
    latent space, from the encoded ``seeds`` (B, 94) or ``config.seeds.n`` random latents; then recover recipes."""
    constraints = config.constraints
    seeds, n_rows = start_rows(config, seeds)
    if model.autoencoder is None:
        raise ValueError("the latent path needs a checkpoint trained with the autoencoder head")
    if model.config.descriptor.kind != "kmd":
        raise ValueError("the latent path recovers compositions through the KMD kernel: needs a 'kmd' descriptor")
    if constraints.element_step_scale != 1.0:
        raise ValueError("element_step_scale applies to the composition path only")
    steps, ae_align_scale = config.steps, config.ae_align_scale
    prepared = validate_targets(model, config.targets)
    tasks = [p.target.task for p in prepared]
    descriptor = Descriptor(model.config.descriptor)
    trajectory: list[dict[str, list[float]]] = []
    with evaluating(model):
        with torch.no_grad():
            if seeds is not None:
                x0 = torch.as_tensor(descriptor.transform(seeds), dtype=torch.float32)
                h0 = model.latent(x0)
            else:
                generator = torch.Generator().manual_seed(config.random_seed)
                h0 = 0.5 * torch.randn(n_rows, model.latent_dim, generator=generator)
        h = h0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([h], lr=config.lr)
        n = len(h)
        points = curve_points(prepared, n)
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            h_task = torch.tanh(h)
            outputs = model.heads_forward(h_task, points, tasks=tasks)
            terms = target_terms(prepared, outputs, n)
            realigned = model.encode(model.autoencoder(h_task))
            align = ((realigned - h_task) ** 2).mean(dim=1)
            loss_rows = terms.sum(dim=1) + ae_align_scale * align
            set_gradient(loss_rows.sum(), h)
            optimizer.step()
            if config.record_trajectory:
                parts = {task: terms[:, j] for j, task in enumerate(tasks)}
                trajectory.append(trajectory_point(step, {**parts, ALIGNMENT_TERM: ae_align_scale * align}))
            if progress is not None:
                progress(step + 1, steps)
        with torch.no_grad():
            h_task = torch.tanh(h)
            latent_objective = target_terms(prepared, model.heads_forward(h_task, points, tasks=tasks), n).sum(dim=1)
            decoded = model.autoencoder(h_task).double().numpy()
    recipes = np.stack([recover_composition(x, descriptor, constraints) for x in decoded])
    return LatentRun(recipes, seeds, latent_objective.numpy().astype(np.float64), decoded, trajectory)


def _solve(kernel_rows: np.ndarray, target: np.ndarray, mass: float) -> np.ndarray:
    """Non-negative w with ``w @ kernel_rows ~ target`` and ``sum(w) = mass`` (penalised, then exact)."""
    system = np.vstack([kernel_rows.T, SUM_PENALTY * np.ones((1, len(kernel_rows)))])
    rhs = np.concatenate([target, [SUM_PENALTY * mass]])
    w, _ = nnls(system, rhs, maxiter=50 * system.shape[1])
    total = w.sum()
    if total <= 0:
        w = np.zeros(len(kernel_rows))
        w[np.argmax(kernel_rows @ target)] = 1.0
        total = 1.0
    return w * (mass / total)


def recover_composition(x: np.ndarray, descriptor: Descriptor, constraints: DesignConstraints) -> np.ndarray:
    """A recipe whose KMD descriptor best matches ``x``, obeying the hard constraints exactly."""
    kernel = descriptor.kernel
    index = element_index()
    recipe = np.zeros(len(element_symbols()))
    for symbol, amount in constraints.fixed_amounts.items():
        recipe[index[symbol]] = float(amount)
    mass = 1.0 - recipe.sum()
    residual = x - recipe @ kernel
    free = np.flatnonzero(constraints.allowed_mask() & (recipe == 0))
    floor = float(constraints.min_nonzero_weight)
    k_free = constraints.max_elements - len(constraints.fixed_amounts) if constraints.max_elements else len(free)
    support = free
    w = _solve(kernel[support], residual, mass)
    threshold = max(floor, RECOVERY_TRACE)
    while True:
        order = np.argsort(-w, kind="stable")
        keep = [i for i in order[:k_free] if w[i] >= threshold] or [int(order[0])]
        while len(keep) > 1 and len(keep) * floor > mass + 1e-12:
            keep.pop()
        if len(keep) == len(support) and w.min() >= threshold:
            break
        support = support[keep]
        w = _solve(kernel[support], residual, mass)
        if len(support) == 1 or (w.min() >= threshold and len(support) <= k_free):
            break
    if floor > 0 and w.min() < floor:  # lift small entries to the floor, take the mass from the largest
        w = _lift_to_floor(w, floor, mass)
    recipe[support] = w
    recipe[recipe < 0] = 0
    return recipe


def _lift_to_floor(w: np.ndarray, floor: float, mass: float) -> np.ndarray:
    spare = mass - floor * len(w)
    above = np.maximum(w - floor, 0)
    return floor + spare * above / above.sum() if above.sum() > 0 else np.full(len(w), mass / len(w))
