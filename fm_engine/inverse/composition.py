"""Gradient-based design in composition space (``optimize_composition``).

Per row: logits over the allowed free elements -> masked softmax -> (annealed soft top-K when
``max_elements`` is set) -> free fractions scaled to the mass left by the pinned elements
(``fixed_amounts`` and elements locked by ``element_step_scale`` 0) -> weights ``w`` -> descriptor
-> model -> objective ``sum_targets weight * term + (1 - diversity_scale) * H(w)``.

Two phases:

1. *Descent* (``1 - polish_fraction`` of the steps) on all allowed elements, the soft top-K temperature
   annealed geometrically from ``25 ** annealing_scale`` to 0.01.
2. *Polish* on the chosen support (the top ``max_elements`` elements, those above the floor), with
   ``w_i = floor + (M - n * floor) * softmax(phi)_i``: every hard constraint holds exactly at every
   polish step, so the final recipe is the optimised point itself, not a projection of it.

``element_step_scale`` in (0, 1) scales each element's change in amount after every Adam step, so it
really slows that element (scaling the gradient would be undone by Adam's normalisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fm_engine.descriptors import Descriptor
from fm_engine.elements import element_index, element_symbols
from fm_engine.inverse.constraints import DesignConstraints
from fm_engine.inverse.descent import ProgressCallback, evaluating, set_gradient, start_rows, trajectory_point
from fm_engine.inverse.targets import Target, curve_points, target_terms, validate_targets
from fm_engine.inverse.uncertainty import DistanceGuide, ensemble_outputs, single_model_error, spread_terms
from fm_engine.models import FlexibleMultiTaskModel

if TYPE_CHECKING:
    from fm_engine.calibration import SpreadScale
    from fm_engine.checkpoints import LoadedCheckpoint
    from fm_engine.inverse.design import DesignConfig

TRACE = 1e-3  # free fractions below this (0.1 at.%) are dropped from final recipes when there is no floor
TAU_END = 0.01
# Names of the objective's terms besides the targets' (each target's term is named by its task).
UNCERTAINTY_TERM = "uncertainty (x spread)"
DIVERSITY_TERM = "diversity (x mixing entropy)"
DISTANCE_TERM = "distance to training (penalty)"


@dataclass
class CompositionRun:
    """Raw result: final recipes (B, 94) float64, the seeds they started from, per-row pinned amounts."""

    weights: np.ndarray
    seeds: np.ndarray | None
    locked: list[dict[str, float]]
    trajectory: list[dict[str, list[float]]] = field(default_factory=list)


def entropy(w: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of each row (nats); zero fractions contribute nothing."""
    return -(w * torch.log(w.clamp_min(1e-12))).sum(dim=-1)


def soft_top_k(logits: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """Differentiable top-k membership in [0, 1] per row (iterated softmax, k per row)."""
    membership = torch.zeros_like(logits)
    alpha = logits.clone()
    for j in range(int(k.max())):
        p = torch.softmax(alpha / tau, dim=-1)
        active = (j < k).to(logits.dtype)[:, None]
        membership = membership + active * p
        alpha = alpha + active * torch.log((1 - p).clamp_min(1e-12))
    return membership.clamp(max=1.0)


class DesignObjective:
    """Model forward + objective for a batch of weight rows (models frozen, float32).

    ``members``: an ensemble's models (``model`` is member 0): the terms read the members' mean, plus
    ``uncertainty_scale`` times each target's calibrated spread (``spread_scales``; see
    :mod:`fm_engine.inverse.uncertainty`). ``guide``: the pull toward the training compositions
    (``max_distance``), added to the loss (not to the terms)."""

    def __init__(
        self,
        model: FlexibleMultiTaskModel,
        targets: Sequence[Target],
        diversity_scale: float,
        *,
        members: Sequence[FlexibleMultiTaskModel] = (),
        spread_scales: Mapping[str, SpreadScale] | None = None,
        uncertainty_scale: float = 0.0,
        guide: DistanceGuide | None = None,
    ) -> None:
        self.model = model
        self.models = list(members) or [model]
        if uncertainty_scale > 0 and len(self.models) < 2:
            raise single_model_error(uncertainty_scale)
        self.prepared = validate_targets(model, targets)
        self.descriptor = Descriptor(model.config.descriptor)
        self.descriptors = [self.descriptor] + [Descriptor(m.config.descriptor) for m in self.models[1:]]
        self.entropy_weight = 1.0 - diversity_scale
        self.tasks = [p.target.task for p in self.prepared]
        self.spread_scales = dict(spread_scales or {})
        self.uncertainty_scale = float(uncertainty_scale)
        self.guide = guide

    @classmethod
    def of_checkpoint(
        cls, checkpoint: LoadedCheckpoint, targets: Sequence[Target], diversity_scale: float, **options: Any
    ) -> DesignObjective:
        """The objective on a checkpoint's members (a single model: its own) with its calibration."""
        return cls(checkpoint.model, targets, diversity_scale, members=checkpoint.members,
                   spread_scales=checkpoint.spread_scales, **options)  # fmt: skip

    def terms(self, w: torch.Tensor) -> torch.Tensor:
        """(B, n_targets) weighted target terms (an ensemble: of the members' mean, plus the weighted spread)."""
        targets, spread = self.split_terms(w)
        return targets if spread is None else targets + self.uncertainty_scale * spread

    def split_terms(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, n_targets) weighted target terms of the members' mean and (B, n_targets) their weighted calibrated
        spreads (``None`` without an uncertainty scale)."""
        n = len(w)
        points = curve_points(self.prepared, n)
        outputs = [
            model.heads_forward(model.encode(descriptor.transform_torch(w)), points, tasks=self.tasks)
            for model, descriptor in zip(self.models, self.descriptors, strict=True)
        ]
        if len(self.models) == 1:
            return target_terms(self.prepared, outputs[0], n), None
        means, stacks = ensemble_outputs(self.models, outputs, self.prepared)
        terms = target_terms(self.prepared, means, n)
        if self.uncertainty_scale > 0:
            return terms, spread_terms(self.prepared, stacks, n, self.spread_scales, self.model)
        return terms, None

    def __call__(self, w: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B,) the objective each row minimises and its terms by name (each (B,), summing to it): one per target
        (its task), then the uncertainty, diversity and distance terms where they apply; all in the objective's
        units (normalised: 1 = one training standard deviation of a target)."""
        targets, spread = self.split_terms(w)
        terms = targets if spread is None else targets + self.uncertainty_scale * spread
        loss = terms.sum(dim=1)
        parts = {task: targets[:, j] for j, task in enumerate(self.tasks)}
        if spread is not None:
            parts[UNCERTAINTY_TERM] = self.uncertainty_scale * spread.sum(dim=1)
        if self.entropy_weight > 0:
            parts[DIVERSITY_TERM] = self.entropy_weight * entropy(w)
            loss = loss + parts[DIVERSITY_TERM]
        if self.guide is not None:
            parts[DISTANCE_TERM] = self.guide.penalty(w)
            loss = loss + parts[DISTANCE_TERM]
        return loss, parts


def design_objective(
    model: FlexibleMultiTaskModel,
    config: DesignConfig,
    *,
    members: Sequence[FlexibleMultiTaskModel] = (),
    spread_scales: Mapping[str, SpreadScale] | None = None,
    training_weights: np.ndarray | None = None,
) -> DesignObjective:
    """The objective a design run minimises and reports, from its config: the targets, the uncertainty scale, the
    diversity (mixing entropy) term and the pull toward the training compositions (``max_distance`` with
    ``training_weights``); the latent method's recipes are scored on their targets only (it does not use the
    diversity and distance terms)."""
    constraints = config.constraints
    composition = config.method == "composition"
    guide = None
    if composition and constraints.max_distance is not None and training_weights is not None and len(training_weights):
        guide = DistanceGuide(training_weights, constraints.allowed_mask(), constraints.max_distance,
                              constraints.max_elements)  # fmt: skip
    return DesignObjective(model, config.targets, constraints.diversity_scale if composition else 1.0,
                           members=members, spread_scales=spread_scales, uncertainty_scale=config.uncertainty_scale,
                           guide=guide)  # fmt: skip


def optimize_composition(
    model: FlexibleMultiTaskModel,
    config: DesignConfig,
    *,
    seeds: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    members: Sequence[FlexibleMultiTaskModel] = (),
    spread_scales: Mapping[str, SpreadScale] | None = None,
    training_weights: np.ndarray | None = None,
) -> CompositionRun:
    """Design recipes for ``config`` (its targets, constraints, steps, lr, random seed, polish fraction,
    uncertainty scale) by descending on element fractions, from ``seeds`` (B, 94) atomic-fraction rows or
    ``config.seeds.n`` random starts. Returns exact final recipes that satisfy every hard constraint but
    ``max_distance``, which is steered toward (with ``training_weights`` (N, 94), the training compositions) and
    verified by :func:`~fm_engine.inverse.design.run_design`. ``members``/``spread_scales``: an ensemble's models
    (``model`` is member 0) and calibration: the objective reads their mean and spread."""
    constraints = config.constraints
    seeds, n_rows = start_rows(config, seeds)
    steps, polish_fraction = config.steps, config.polish_fraction
    objective = design_objective(model, config, members=members, spread_scales=spread_scales,
                                 training_weights=training_weights)  # fmt: skip
    symbols = element_symbols()
    index = element_index()
    n_elements = len(symbols)
    generator = torch.Generator().manual_seed(config.random_seed)

    # ---- pinned amounts (fixed everywhere, locked at each seed's amount)
    pinned = np.zeros((n_rows, n_elements))
    for symbol, amount in constraints.fixed_amounts.items():
        pinned[:, index[symbol]] = float(amount)
    locked: list[dict[str, float]] = [{} for _ in range(n_rows)]
    for symbol in constraints.locked_elements():
        column = seeds[:, index[symbol]]  # type: ignore[index]
        pinned[:, index[symbol]] = column
        for row, amount in enumerate(column):
            locked[row][symbol] = float(amount)
    free_mass = 1.0 - pinned.sum(axis=1)
    floor = float(constraints.min_nonzero_weight)
    for row in range(n_rows):
        if free_mass[row] <= 1e-9:
            raise ValueError(f"seed row {row}: fixed and locked elements leave nothing to design")
        small = {s: a for s, a in locked[row].items() if 0 < a < floor}
        if small:
            raise ValueError(f"seed row {row}: locked amount(s) {small} below min_nonzero_weight {floor}")
    pinned_mask = pinned > 0
    free = constraints.allowed_mask()[None, :] & ~pinned_mask & ~_locked_mask(constraints, n_rows)
    n_pinned = pinned_mask.sum(axis=1)
    k_free = (constraints.max_elements - n_pinned) if constraints.max_elements is not None else None

    # ---- start points
    free_t = torch.as_tensor(free)
    if seeds is not None:
        uniform = free / free.sum(axis=1, keepdims=True)
        seed_free = np.where(free, seeds, 0.0)
        totals = seed_free.sum(axis=1, keepdims=True)
        seed_free = np.where(totals > 0, seed_free / np.where(totals > 0, totals, 1.0), uniform)
        start = constraints.seed_blend * seed_free + (1 - constraints.seed_blend) * uniform
        logits0 = torch.as_tensor(np.log(np.clip(start, 1e-12, None)), dtype=torch.float32)
    else:
        logits0 = 0.5 * torch.randn(n_rows, n_elements, generator=generator)
    logits = torch.where(free_t, logits0, torch.zeros_like(logits0)).requires_grad_(True)
    pinned_t = torch.as_tensor(pinned, dtype=torch.float32)
    mass_t = torch.as_tensor(free_mass, dtype=torch.float32)[:, None]
    scales = torch.as_tensor(constraints.step_scales(), dtype=torch.float32)
    k_t = torch.as_tensor(k_free) if k_free is not None else None
    neg_inf = torch.tensor(float("-inf"))

    steps_polish = int(round(steps * polish_fraction)) if polish_fraction > 0 else 0
    steps_descent = steps - steps_polish
    tau_start = 25.0**constraints.annealing_scale
    trajectory: list[dict[str, list[float]]] = []
    with ExitStack() as stack:
        for member in objective.models:
            stack.enter_context(evaluating(member))

        def weights_from(logit_rows: torch.Tensor, tau: float) -> torch.Tensor:
            masked = torch.where(free_t, logit_rows, neg_inf)
            q = torch.softmax(masked, dim=-1)
            if k_t is not None:
                q = q * soft_top_k(masked, k_t, tau)
                q = q / q.sum(dim=-1, keepdim=True)
            return pinned_t + mass_t * q

        optimizer = torch.optim.Adam([logits], lr=config.lr)
        schedule = _cosine(optimizer, steps_descent)
        for step in range(steps_descent):
            tau = tau_start * (TAU_END / tau_start) ** (step / max(steps_descent - 1, 1))
            optimizer.zero_grad(set_to_none=True)
            w = weights_from(logits, tau)
            loss_rows, terms = objective(w)
            set_gradient(loss_rows.sum(), logits)
            _scaled_step(optimizer, logits, scales, free_t)
            schedule.step()
            if config.record_trajectory:
                trajectory.append(trajectory_point(step, terms))
            if progress is not None:
                progress(step + 1, steps)

        with torch.no_grad():
            w_descent = weights_from(logits, TAU_END).double().numpy()
        support = _choose_support(w_descent, free, k_free, floor, free_mass)
        support_t = torch.as_tensor(support)
        n_support = support.sum(axis=1)
        spare = torch.as_tensor(free_mass - n_support * floor, dtype=torch.float32)[:, None]
        phi0 = torch.as_tensor(np.log(np.clip(w_descent, 1e-9, None)), dtype=torch.float32)
        phi = torch.where(support_t, phi0, torch.zeros_like(phi0)).requires_grad_(True)

        def polished(phi_rows: torch.Tensor) -> torch.Tensor:
            share = torch.softmax(torch.where(support_t, phi_rows, neg_inf), dim=-1)
            return pinned_t + floor * support_t.float() + spare * share

        optimizer = torch.optim.Adam([phi], lr=config.lr)
        schedule = _cosine(optimizer, steps_polish)
        for step in range(steps_polish):
            optimizer.zero_grad(set_to_none=True)
            loss_rows, terms = objective(polished(phi))
            set_gradient(loss_rows.sum(), phi)
            _scaled_step(optimizer, phi, scales, support_t)
            schedule.step()
            if config.record_trajectory:
                trajectory.append(trajectory_point(steps_descent + step, terms))
            if progress is not None:
                progress(steps_descent + step + 1, steps)

    final = _exact_recipes(phi.detach().double().numpy(), support, pinned, free_mass, floor)
    return CompositionRun(weights=final, seeds=seeds, locked=locked, trajectory=trajectory)


def _cosine(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Learning rate decays along a half cosine to a tenth of its start over a phase."""
    base = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1), eta_min=0.1 * base)


def _locked_mask(constraints: DesignConstraints, n_rows: int) -> np.ndarray:
    mask = np.zeros((n_rows, len(element_symbols())), dtype=bool)
    for symbol in constraints.locked_elements():
        mask[:, element_index()[symbol]] = True  # locked at 0 in a seed: stays out
    return mask


def _scaled_step(
    optimizer: torch.optim.Optimizer, parameter: torch.Tensor, scales: torch.Tensor, mask: torch.Tensor
) -> None:
    """Adam step, then scale each element's change *in amount* by its ``element_step_scale``.

    The share ``q = softmax(logits)`` moves from ``q_old`` to ``q_old + s * (q_new - q_old)``; the
    elements with the largest scale absorb what the slowed ones did not take, so the shares still sum
    to 1. (Scaling gradients would do nothing: Adam normalises them away.)
    """
    if bool((scales == 1).all()):
        optimizer.step()
        return
    neg_inf = torch.tensor(float("-inf"))
    with torch.no_grad():
        q_old = torch.softmax(torch.where(mask, parameter, neg_inf), dim=-1)
    optimizer.step()
    with torch.no_grad():
        q_new = torch.softmax(torch.where(mask, parameter, neg_inf), dim=-1)
        q = q_old + scales * (q_new - q_old)
        absorbing = mask & (scales >= scales[mask.any(dim=0)].max())
        absorbed = (q * absorbing).sum(dim=-1, keepdim=True)
        factor = torch.where(absorbed > 0, (absorbed + 1 - q.sum(dim=-1, keepdim=True)) / absorbed, 1.0)
        q = torch.where(absorbing, q * factor.clamp_min(0), q).clamp_min(1e-30) * mask
        q = q / q.sum(dim=-1, keepdim=True)
        parameter.copy_(torch.where(mask, torch.log(q.clamp_min(1e-30)), parameter))


def _choose_support(
    w: np.ndarray, free: np.ndarray, k_free: np.ndarray | None, floor: float, free_mass: np.ndarray
) -> np.ndarray:
    """Per row: the free elements kept for the polish phase (largest first; cap, floor and trace rules)."""
    support = np.zeros_like(free)
    threshold = max(floor, TRACE)
    for row in range(len(w)):
        candidates = [i for i in np.argsort(-w[row], kind="stable") if free[row, i]]
        limit = int(k_free[row]) if k_free is not None else len(candidates)
        chosen = [i for i in candidates[:limit] if w[row, i] >= threshold] or candidates[:1]
        while len(chosen) > 1 and len(chosen) * floor > free_mass[row] + 1e-12:
            chosen.pop()  # drop the smallest until every kept element can sit at or above the floor
        support[row, chosen] = True
    return support


def _exact_recipes(
    phi: np.ndarray, support: np.ndarray, pinned: np.ndarray, free_mass: np.ndarray, floor: float
) -> np.ndarray:
    """Float64 recipes from the polish parameters; trace fractions dropped when there is no floor."""
    recipes = pinned.copy()
    for row in range(len(phi)):
        idx = np.flatnonzero(support[row])
        logits = phi[row, idx] - phi[row, idx].max()
        share = np.exp(logits) / np.exp(logits).sum()
        spare = free_mass[row] - len(idx) * floor
        amounts = floor + spare * share
        if floor == 0.0 and len(idx) > 1:
            keep = amounts >= TRACE
            if not keep.any():
                keep[np.argmax(amounts)] = True
            idx, amounts = idx[keep], amounts[keep]
            amounts = amounts * (free_mass[row] / amounts.sum())
        recipes[row, idx] = amounts
    return recipes


def project_onto_constraints(rows: np.ndarray, constraints: DesignConstraints) -> np.ndarray:
    """Each row of atomic fractions (e.g. a seed) moved onto the hard constraints the way a recipe is adjusted by
    hand: the fixed amounts set, elements outside ``allowed_elements`` removed, the rest rescaled in proportion to
    fill what the fixed amounts leave, only the largest ``max_elements`` kept and none below
    ``min_nonzero_weight`` (the smallest dropped until the rest, rescaled, reach it). Elements locked by
    ``element_step_scale`` 0 keep the row's own amount. A row with nothing of the allowed elements becomes an even
    mixture of them (the first ``max_elements`` by atomic number). Rows of NaN (no seed) stay NaN."""
    index = element_index()
    rows = np.asarray(rows, dtype=np.float64)
    allowed = constraints.allowed_mask()
    floor = float(constraints.min_nonzero_weight)
    locked = _locked_mask(constraints, 1)[0]
    projected = np.full_like(rows, np.nan)
    for r, row in enumerate(rows):
        if not np.isfinite(row).all() or not row.sum() > 0:
            continue
        row = row / row.sum()
        recipe = np.where(locked, row, 0.0)
        for symbol, amount in constraints.fixed_amounts.items():
            recipe[index[symbol]] = float(amount)
        free = allowed & (recipe == 0) & ~locked
        mass = 1.0 - recipe.sum()
        amounts = np.where(free, row, 0.0)
        if not amounts.sum() > 0:
            amounts = free.astype(np.float64)
        cap = constraints.max_elements - int((recipe > 0).sum()) if constraints.max_elements is not None else None
        kept = [i for i in np.argsort(-amounts, kind="stable") if amounts[i] > 0][:cap]
        while len(kept) > 1 and amounts[kept[-1]] * mass / amounts[kept].sum() < floor - 1e-12:
            kept.pop()  # the smallest cannot reach the floor: dropped, the others rescaled
        recipe[kept] = amounts[kept] * mass / amounts[kept].sum()
        projected[r] = recipe
    return projected
