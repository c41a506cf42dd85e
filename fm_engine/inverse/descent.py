"""What the two optimisers (composition and latent space) share: their start rows, the model held in eval mode
without writing to it, gradients on the design variables only, and the trajectory record."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from fm_engine.elements import element_symbols
from fm_engine.models import FlexibleMultiTaskModel

if TYPE_CHECKING:
    from fm_engine.inverse.design import DesignConfig

ProgressCallback = Callable[[int, int], None]  # (steps done, steps in all)


def start_rows(config: DesignConfig, seeds: np.ndarray | None) -> tuple[np.ndarray | None, int]:
    """The seed rows normalised to sum 1 (or ``None``) and the number of rows to design: one per seed, else
    ``config.seeds.n`` random starts. The constraints are checked against having seeds or not."""
    config.constraints.validate(has_seeds=seeds is not None)
    if seeds is None:
        return None, int(config.seeds.n)
    n_elements = len(element_symbols())
    seeds = np.asarray(seeds, dtype=np.float64)
    if seeds.ndim != 2 or seeds.shape[1] != n_elements or len(seeds) == 0:
        raise ValueError(f"seeds must be (n, {n_elements}) weight rows")
    return seeds / seeds.sum(axis=1, keepdims=True), len(seeds)


@contextmanager
def evaluating(model: FlexibleMultiTaskModel) -> Iterator[None]:
    """The model in eval mode for a design, without writing to a model that is already in eval mode.

    A loaded checkpoint is shared by every workbench session (one cached model, one script thread per session):
    a design never changes its flags (no ``requires_grad_``, no ``train()``; gradients are taken with respect to
    the design variables only), so designs running at the same time cannot see each other's changes."""
    if not model.training:
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train(True)


def set_gradient(loss: torch.Tensor, parameter: torch.Tensor) -> None:
    """``parameter.grad`` = d loss / d parameter, and nothing else: no gradient is computed for, or left on,
    the model's weights (``backward()`` would accumulate into the shared model's ``.grad``)."""
    (parameter.grad,) = torch.autograd.grad(loss, [parameter])


def trajectory_point(step: int, terms: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, list[float]]:
    """One step of a run's trajectory: the step, each row's objective (the sum of its terms: what the row
    minimises) and each term per row, by name (a target's term by its task)."""
    values = {name: torch.as_tensor(term).detach().double() for name, term in terms.items()}
    record = {"step": [float(step)], "objective": torch.stack(list(values.values())).sum(dim=0).tolist()}
    for name, term in values.items():
        record[name] = term.tolist()
    return record
