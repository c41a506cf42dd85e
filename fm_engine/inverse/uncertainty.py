"""Uncertainty-aware design: an ensemble's mean and spread as differentiable objective terms, and the pull toward
the training compositions that ``max_distance`` asks for.

*Mean.* Each member's regression / curve output is brought into member 0's normalised units (the members of one
run share their scalers, so this is usually the identity) and averaged; classification averages the members'
probabilities (the terms read ``log`` of the mean probabilities). *Spread.* The members' population standard
deviation of the same quantity, in the target's own units of spread (normalised units: the task's training spread;
probability for classes), calibrated as every reported ``_std`` is: ``sqrt((a * std)^2 + b^2)`` with the task's factor
``a`` and floor ``b`` (``ensemble.std_factors``; ``b`` brought into the same normalised units), so the term is the
spread the results table shows, in the target's units of spread.
*Distance.* ``0.5 * sum |w - w_train|`` to the nearest training composition (the applicability module's distance),
computed on the allowed elements only: a training composition's mass outside them is a constant of its distance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fm_engine.calibration import SpreadScale
from fm_engine.inverse.targets import _PreparedTarget
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.tasks import TaskType

SPREAD_EPS = 1e-12  # inside the square root of the variance: a finite gradient where the members agree exactly
DISTANCE_PENALTY = 200.0  # objective added per unit of distance beyond the steering bound
DISTANCE_MARGIN = 0.9  # steer toward this share of max_distance so the final (polished, trace-free) recipe holds it


def single_model_error(scale: float) -> ValueError:
    return ValueError(
        f"uncertainty_scale: {scale:g} needs an ensemble checkpoint (the spread of its members); this checkpoint "
        "is a single model with no spread: set uncertainty_scale to 0 or train with `fm train --ensemble N`"
    )


def _in_reference_units(
    reference: FlexibleMultiTaskModel, member: FlexibleMultiTaskModel, task: str, y: torch.Tensor
) -> torch.Tensor:
    """A member's normalised regression / curve output in ``reference``'s normalised units (linear scalers)."""
    if member is reference:
        return y
    mine, theirs = member.config.scalers[task], reference.config.scalers[task]
    if list(mine.mean) == list(theirs.mean) and list(mine.std) == list(theirs.std):
        return y
    vector = y.ndim > 1 and member.tasks[task].type is not TaskType.KERNEL_REGRESSION

    def pick(values: Sequence[float]) -> torch.Tensor:
        tensor = torch.as_tensor(values, dtype=y.dtype)
        return tensor if vector else tensor[0]

    return (y * pick(mine.std) + pick(mine.mean) - pick(theirs.mean)) / pick(theirs.std)


def ensemble_outputs(
    models: Sequence[FlexibleMultiTaskModel],
    outputs: Sequence[Mapping[str, torch.Tensor]],
    prepared: Sequence[_PreparedTarget],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per target task: the members' mean in the form :func:`~fm_engine.inverse.targets.target_terms` reads
    (regression / curves: model 0's normalised units; classification: log of the mean probabilities) and the
    members' stacked values ((M, ...) normalised outputs, or probabilities) for :func:`spread_terms`."""
    means: dict[str, torch.Tensor] = {}
    stacks: dict[str, torch.Tensor] = {}
    for p in prepared:
        task = p.target.task
        if p.kind in ("class_high", "class_low"):
            stack = torch.stack([torch.softmax(o[task], dim=-1) for o in outputs])
            means[task] = torch.log(stack.mean(dim=0).clamp_min(1e-30))
        else:
            pairs = zip(models, outputs, strict=True)
            stack = torch.stack([_in_reference_units(models[0], m, task, o[task]) for m, o in pairs])
            means[task] = stack.mean(dim=0)
        stacks[task] = stack
    return means, stacks


def spread_terms(
    prepared: Sequence[_PreparedTarget],
    stacks: Mapping[str, torch.Tensor],
    n_rows: int,
    scales: Mapping[str, SpreadScale],
    reference: FlexibleMultiTaskModel,
) -> torch.Tensor:
    """(n_rows, n_targets) each target's calibrated spread over the members, times the target's weight: regression
    the std of the value (mean over a vector's entries), curves the mean std over the target's points,
    classification the std of the probability of the target's classes. Regression and curve spreads are in
    ``reference``'s (member 0's) normalised units, so a task's floor ``b`` (physical unit) is divided by the task's
    training spread (the mean over a vector task's entries)."""
    terms = []
    for p in prepared:
        task = p.target.task
        stack = stacks[task]
        if p.kind in ("class_high", "class_low"):
            stack = stack[:, :, p.tensor].sum(dim=-1)  # type: ignore[index]
        spread = torch.sqrt(stack.var(dim=0, unbiased=False) + SPREAD_EPS)
        scale = scales.get(task, SpreadScale())
        floor = scale.b / float(np.mean(reference.config.scalers[task].std)) if scale.b > 0 else 0.0
        spread = torch.sqrt((scale.a * spread) ** 2 + floor**2) if floor > 0 else scale.a * spread
        terms.append(p.target.weight * spread.reshape(n_rows, -1).mean(dim=1))
    return torch.stack(terms, dim=1)


class DistanceGuide:
    """The distance of weight rows to the nearest of the training compositions that a recipe of the ``allowed``
    elements (at most ``max_elements`` of them) could come within ``DISTANCE_MARGIN * max_distance`` of, and a
    penalty beyond that distance. (Steering toward a training composition no recipe can reach would hold recipes
    in between.)"""

    def __init__(
        self, training_weights: np.ndarray, allowed: np.ndarray, max_distance: float, max_elements: int | None = None
    ) -> None:
        missing = training_weights[:, ~allowed].sum(axis=1)  # atoms no recipe of the allowed elements holds
        reach = missing.copy()  # the least distance a recipe has (missing mass sits elsewhere: counted twice, halved)
        if max_elements is not None:  # a recipe of K elements also misses the smallest n - K of the reference's
            inside = np.sort(training_weights[:, allowed], axis=1)
            reach = reach + inside[:, : max(inside.shape[1] - max_elements, 0)].sum(axis=1)
        usable = reach <= DISTANCE_MARGIN * max_distance
        if not usable.any():
            raise ValueError(
                f"constraints.max_distance: {max_distance:g}: no training composition lies within {max_distance:g} "
                "of any recipe of the allowed elements and max_elements (the atoms such a recipe cannot hold are "
                "further already)"
            )
        self.max_distance = float(max_distance)
        self.columns = torch.as_tensor(np.flatnonzero(allowed))
        self.reference = torch.as_tensor(training_weights[usable][:, allowed], dtype=torch.float32)
        self.outside = torch.as_tensor(0.5 * missing[usable], dtype=torch.float32)

    def distance(self, w: torch.Tensor) -> torch.Tensor:
        """(B,) distance to the nearest usable training composition (the fraction of atoms that differ)."""
        inside = w[:, self.columns]
        best = []
        for start in range(0, len(self.reference), 4096):
            reference = self.reference[start : start + 4096]
            d = 0.5 * (inside[:, None, :] - reference[None]).abs().sum(dim=-1) + self.outside[start : start + 4096]
            best.append(d.min(dim=1).values)
        return torch.stack(best, dim=1).min(dim=1).values

    def penalty(self, w: torch.Tensor) -> torch.Tensor:
        """(B,) ``DISTANCE_PENALTY * (distance - DISTANCE_MARGIN * max_distance)`` where positive, else 0."""
        return DISTANCE_PENALTY * torch.relu(self.distance(w) - DISTANCE_MARGIN * self.max_distance)
