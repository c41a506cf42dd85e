"""A new regression head that starts from the kept head it is most related to.

A run fine-tuned from the foundation adds a fresh head for each of its own tasks. When a kept head already
predicts something close to the run's property (the foundation's DFT band gap for an experimental band gap), the
new head can start from a copy of that head, with the straight line from its output to the run's targets folded
into its last layer: the new head then starts as the best linear map of that DFT prediction, and training refines
it. The kept head is chosen on the run's *training* rows only: the largest absolute Pearson correlation between
its output and the task's targets, at least ``min_correlation``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.tasks import TaskType

RELATED_HEAD_MIN_CORRELATION = 0.5
"""The smallest absolute correlation (training rows) for a kept head to start a new head."""


@dataclass(frozen=True)
class HeadStart:
    """The new head of ``task`` started from kept head ``source``: ``correlation`` of the source's output with the
    task's ``rows`` training targets."""

    task: str
    source: str
    correlation: float
    rows: int

    def text(self) -> str:
        return (f"{self.task}: head started from {self.source} (correlation {self.correlation:.3f} on "
                f"{self.rows:,} training rows)")  # fmt: skip


def _last_linear(head: nn.Module) -> nn.Linear:
    return [module for module in head.modules() if isinstance(module, nn.Linear)][-1]


def _scalar_regression(model: FlexibleMultiTaskModel, name: str) -> bool:
    return model.tasks[name].type is TaskType.REGRESSION and model.config.scalers[name].output_dim == 1


def start_related_heads(
    model: FlexibleMultiTaskModel,
    *,
    x: np.ndarray,
    targets: dict[str, tuple[np.ndarray, np.ndarray]],
    kept: list[str],
    min_correlation: float,
) -> list[HeadStart]:
    """Start each new scalar regression head of ``targets`` (task -> (training row positions into the descriptor
    rows ``x``, their targets in physical units)) from the most correlated kept scalar regression head of the
    same shape; returns what was started from what. Heads without a kept head correlated at least
    ``min_correlation`` stay as built."""
    sources = [name for name in kept if _scalar_regression(model, name)]
    started: list[HeadStart] = []
    was_training = model.training
    model.eval()
    try:
        for task, (rows, values) in targets.items():
            if not _scalar_regression(model, task) or len(rows) < 3:
                continue
            shape = [tuple(p.shape) for p in model.heads[task].parameters()]
            candidates = [s for s in sources if [tuple(p.shape) for p in model.heads[s].parameters()] == shape]
            if not candidates:
                continue
            with torch.no_grad():
                h = model.encode(torch.as_tensor(np.asarray(x[rows]), dtype=torch.float32))
                outputs = {s: model.heads[s](h).double().numpy() for s in candidates}
            y = model.to_normalised(task, torch.as_tensor(values, dtype=torch.float64)).numpy()
            correlation = {s: float(np.corrcoef(out, y)[0, 1]) if out.std() > 0 and y.std() > 0 else 0.0
                           for s, out in outputs.items()}  # fmt: skip
            best = max(candidates, key=lambda s: abs(correlation[s]))
            if abs(correlation[best]) < min_correlation:
                continue
            slope, intercept = np.polyfit(outputs[best], y, 1)  # y ~ slope * source output + intercept
            head = copy.deepcopy(model.heads[best])
            last = _last_linear(head)
            with torch.no_grad():
                last.weight.mul_(float(slope))
                last.bias.mul_(float(slope)).add_(float(intercept))
            model.heads[task].load_state_dict(head.state_dict())
            started.append(HeadStart(task, best, round(correlation[best], 4), len(rows)))
    finally:
        model.train(was_training)
    return started
