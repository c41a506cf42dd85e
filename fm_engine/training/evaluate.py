"""Evaluate a model on a split: per-task losses (normalised) and metrics in physical units."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fm_engine.data import CompositionDataModule
from fm_engine.models import AUTOENCODER, FlexibleMultiTaskModel, flatten_curves
from fm_engine.models.model import regression_loss
from fm_engine.tasks import TaskType
from fm_engine.training.metrics import classification_metrics, curve_metrics, regression_metrics


@dataclass
class StageEvaluation:
    """``metrics[task]``: e.g. ``{"mae": .., "rmse": .., "r2": .., "n": ..}`` in the task's unit."""

    stage: str
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    loss: float = float("nan")


@torch.no_grad()
def evaluate(
    model: FlexibleMultiTaskModel, dm: CompositionDataModule, stage: str, *, chunk_size: int = 4096
) -> StageEvaluation:
    """Full pass over a split in eval mode (the model's train/eval mode is restored afterwards)."""
    dataset = dm.dataset(stage)
    result = StageEvaluation(stage=stage)
    if len(dataset) == 0:
        return result
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions: dict[str, list[torch.Tensor]] = {name: [] for name in model.tasks}
    targets: dict[str, list[torch.Tensor]] = {name: [] for name in model.tasks}
    ae_error, ae_count = 0.0, 0
    try:
        for start in range(0, len(dataset), chunk_size):
            batch = dataset.__getitems__(list(range(start, min(start + chunk_size, len(dataset)))))
            x = batch.x.to(device)
            points = {}
            curve_y = {}
            for name, task in model.tasks.items():
                if task.type is TaskType.KERNEL_REGRESSION and name in batch.t:
                    flat_t, index, flat_y = flatten_curves(batch.t[name], batch.targets[name])
                    if len(flat_t):
                        points[name] = (flat_t.to(device), index.to(device))
                        curve_y[name] = flat_y
            outputs = model(x, points)
            for name, task in model.tasks.items():
                if name not in batch.masks:
                    continue
                if task.type is TaskType.KERNEL_REGRESSION:
                    if name in outputs:
                        predictions[name].append(outputs[name].cpu())
                        targets[name].append(curve_y[name])
                    continue
                mask = batch.masks[name]
                predictions[name].append(outputs[name].cpu()[mask])
                targets[name].append(batch.targets[name][mask])  # type: ignore[index]
            if AUTOENCODER in outputs:
                ae_error += float(((outputs[AUTOENCODER] - x) ** 2).sum())
                ae_count += x.numel()
        losses: dict[str, torch.Tensor] = {}
        for name, task in model.tasks.items():
            if not predictions[name] or sum(len(p) for p in predictions[name]) == 0:
                continue
            pred = torch.cat(predictions[name])
            true = torch.cat(targets[name])
            if task.type is TaskType.CLASSIFICATION:
                weight = model.heads[name].class_weights.cpu()
                losses[name] = F.cross_entropy(pred, true, weight=weight)
                metrics = classification_metrics(true.numpy(), torch.softmax(pred, -1).numpy())
            else:
                normalised = model.to_normalised(name, true)
                if task.type is TaskType.REGRESSION:
                    losses[name] = regression_loss(task, pred, normalised)
                else:
                    losses[name] = F.mse_loss(pred, normalised)
                physical = model.to_physical(name, pred).numpy()
                if task.type is TaskType.KERNEL_REGRESSION:
                    metrics = curve_metrics(true.numpy(), physical)
                else:
                    metrics = regression_metrics(true.numpy(), physical)
            metrics["n"] = float(len(true))
            result.metrics[name] = metrics
        if ae_count:
            losses[AUTOENCODER] = torch.tensor(ae_error / ae_count)
        result.losses = {name: float(value) for name, value in losses.items()}
        if losses:
            result.loss = float(model.total_loss({k: v.to(device) for k, v in losses.items()}))
    finally:
        model.train(was_training)
    return result


def flat_metrics(evaluation: StageEvaluation) -> dict[str, float]:
    """``{"val/<task>/<metric>": value, "val/<task>/loss": .., "val/loss": ..}`` for logs."""
    out: dict[str, float] = {f"{evaluation.stage}/loss": evaluation.loss}
    for name, loss in evaluation.losses.items():
        out[f"{evaluation.stage}/{name}/loss"] = loss
    for name, metrics in evaluation.metrics.items():
        for key, value in metrics.items():
            if key != "n":
                out[f"{evaluation.stage}/{name}/{key}"] = value
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in out.items()}  # type: ignore[misc]
