"""Evaluate a model on a split: per-task losses (normalised) and metrics in physical units, and the
per-composition predictions behind them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fm_engine.data import CompositionDataModule
from fm_engine.models import AUTOENCODER, FlexibleMultiTaskModel, flatten_curves
from fm_engine.models.model import members_mean_and_spread, regression_loss
from fm_engine.tasks import TaskType
from fm_engine.thresholds import AUTO, ThresholdChoice, choose_threshold
from fm_engine.training.metrics import metric_intervals, task_metrics

CARD_BOOTSTRAP_RESAMPLES = 1000


@dataclass
class StageEvaluation:
    """``metrics[task]``: e.g. ``{"mae": .., "rmse": .., "r2": .., "n": ..}`` in the task's unit;
    ``intervals[task]``: 95 % bootstrap interval ``[low, high]`` of each metric (when asked for);
    ``thresholds[task]``: binary tasks whose decision threshold was set before this evaluation, with the figures
    behind a threshold chosen on this split (None: fixed by the task, or none; see
    :func:`choose_decision_thresholds`)."""

    stage: str
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    loss: float = float("nan")
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    thresholds: dict[str, ThresholdChoice | None] = field(default_factory=dict)


@dataclass
class StageOutputs:
    """Raw outputs on a split, per task: ``outputs`` (normalised values or logits), ``targets`` (physical
    units or class indices), ``rows`` (row of the joined table per output) and ``t`` (sequence tasks:
    the ``t`` of each output point)."""

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    t: dict[str, np.ndarray] = field(default_factory=dict)
    ae_error: float = 0.0
    ae_count: int = 0


@torch.no_grad()
def collect_outputs(
    model: FlexibleMultiTaskModel, dm: CompositionDataModule, stage: str, *, chunk_size: int = 4096
) -> StageOutputs:
    """Full pass over a split in eval mode (the model's train/eval mode is restored afterwards)."""
    dataset = dm.dataset(stage)
    collected = StageOutputs()
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]]] = {n: [] for n in model.tasks}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(dataset), chunk_size):
            items = list(range(start, min(start + chunk_size, len(dataset))))
            batch = dataset.__getitems__(items)
            rows = dataset.indices[items]
            x = batch.x.to(device)
            points, curve_y, curve_rows = {}, {}, {}
            for name, task in model.tasks.items():
                if task.type is TaskType.KERNEL_REGRESSION and name in batch.t:
                    flat_t, index, flat_y = flatten_curves(batch.t[name], batch.targets[name])
                    if len(flat_t):
                        points[name] = (flat_t.to(device), index.to(device))
                        curve_y[name] = flat_y
                        curve_rows[name] = rows[index.numpy()]
            outputs = model(x, points)
            for name, task in model.tasks.items():
                if name not in batch.masks:
                    continue
                if task.type is TaskType.KERNEL_REGRESSION:
                    if name in outputs:
                        t_values = points[name][0].cpu().numpy()
                        parts[name].append((outputs[name].cpu(), curve_y[name], curve_rows[name], t_values))
                    continue
                mask = batch.masks[name]
                target = batch.targets[name][mask]  # type: ignore[index]
                parts[name].append((outputs[name].cpu()[mask], target, rows[mask.numpy()], np.zeros(0)))
            if AUTOENCODER in outputs:
                collected.ae_error += float(((outputs[AUTOENCODER] - x) ** 2).sum())
                collected.ae_count += x.numel()
    finally:
        model.train(was_training)
    for name, chunks in parts.items():
        if chunks and sum(len(c[0]) for c in chunks):
            collected.outputs[name] = torch.cat([c[0] for c in chunks])
            collected.targets[name] = torch.cat([c[1] for c in chunks])
            collected.rows[name] = np.concatenate([c[2] for c in chunks])
            collected.t[name] = np.concatenate([c[3] for c in chunks])
    return collected


@torch.no_grad()
def evaluate(
    model: FlexibleMultiTaskModel,
    dm: CompositionDataModule,
    stage: str,
    *,
    chunk_size: int = 4096,
    loss_tasks: Collection[str] | None = None,
    n_bootstrap: int = 0,
    collected: StageOutputs | None = None,
    physical: Mapping[str, np.ndarray] | None = None,
) -> StageEvaluation:
    """Per-task losses and metrics on a split. ``loss`` (the early-stopping criterion) is the weighted
    total over ``loss_tasks`` (default: every task, and the autoencoder). With ``n_bootstrap`` > 0, each
    metric also gets a 95 % percentile bootstrap interval over that many resamples of the split's
    compositions (a sequence task's curve is resampled whole). ``collected``: the model's outputs on the
    split (:func:`collect_outputs`), if already computed. ``physical``: per task, the predictions the metrics score
    in place of the model's own (an ensemble's mean, see :func:`ensemble_outputs`; rows as in ``collected``, the
    model's decision thresholds applied); the losses stay the model's own."""
    if collected is None:
        collected = collect_outputs(model, dm, stage, chunk_size=chunk_size)
    result = StageEvaluation(stage=stage)
    losses: dict[str, torch.Tensor] = {}
    for name, pred in collected.outputs.items():
        task = model.tasks[name]
        true = collected.targets[name]
        if task.type is TaskType.CLASSIFICATION:
            weight = model.heads[name].class_weights.cpu()
            losses[name] = F.cross_entropy(pred, true, weight=weight)
        else:
            normalised = model.to_normalised(name, true)
            if task.type is TaskType.REGRESSION:
                losses[name] = regression_loss(task, pred, normalised)
            else:
                losses[name] = F.mse_loss(pred, normalised)
        # class probabilities for classification
        predicted = physical[name] if physical is not None else model.to_physical(name, pred).numpy()
        y_true = true.numpy()
        threshold = model.decision_threshold(name)
        result.metrics[name] = task_metrics(task.type.value, y_true, predicted, threshold=threshold) | {
            "n": float(len(true))
        }
        if n_bootstrap > 0:
            result.intervals[name] = metric_intervals(
                task.type.value, y_true, predicted, collected.rows[name], n_resamples=n_bootstrap, threshold=threshold
            )
    if collected.ae_count:
        losses[AUTOENCODER] = torch.tensor(collected.ae_error / collected.ae_count)
    result.losses = {name: float(value) for name, value in losses.items()}
    counted = {k: v for k, v in losses.items() if loss_tasks is None or k in loss_tasks or k == AUTOENCODER}
    if counted:
        device = next(model.parameters()).device
        result.loss = float(model.total_loss({k: v.to(device) for k, v in counted.items()}))
    return result


def choose_decision_thresholds(
    model: FlexibleMultiTaskModel,
    dm: CompositionDataModule,
    *,
    stage: str = "val",
    collected: StageOutputs | None = None,
    physical: Mapping[str, np.ndarray] | None = None,
) -> dict[str, ThresholdChoice | None]:
    """Set the decision threshold of every binary classification task with rows in ``dm`` (see
    :mod:`fm_engine.thresholds`): the task's fixed ``decision_threshold``, or (``"auto"``) the one chosen on
    ``stage``'s predictions of the model as it is now (the run's final weights): the highest balanced
    accuracy, ties closest to 0.5; without rows of both classes there, none (the most probable class).
    Multi-class tasks get none. Heads without rows in ``dm`` keep theirs. Returns, per binary task set here,
    the validation figures behind an automatic choice (None for a fixed or absent threshold). Never reads
    the test split unless asked to. ``collected``: the model's outputs on ``stage``, if already computed;
    ``physical``: the class probabilities to choose on in place of the model's own (an ensemble's mean
    probabilities on ``collected``'s rows, see :func:`ensemble_outputs`)."""
    classified = [name for name, task in model.tasks.items() if task.type is TaskType.CLASSIFICATION]
    binary = [name for name in classified if len(model.tasks[name].classes or []) == 2 and name in dm.masks]
    for name in classified:
        if name not in binary and name in dm.masks:
            model.set_decision_threshold(name, None)
    auto = [name for name in binary if model.tasks[name].decision_threshold == AUTO]
    if collected is None:
        collected = collect_outputs(model, dm, stage) if auto else StageOutputs()
    choices: dict[str, ThresholdChoice | None] = {}
    for name in binary:
        setting = model.tasks[name].decision_threshold
        choice = None
        if setting != AUTO:
            model.set_decision_threshold(name, float(setting))
        elif name in collected.outputs:
            proba = physical[name] if physical is not None else model.to_physical(name, collected.outputs[name]).numpy()
            choice = choose_threshold(collected.targets[name].numpy(), proba[:, 1])
            model.set_decision_threshold(name, choice.threshold if choice is not None else None)
        else:
            model.set_decision_threshold(name, None)
        choices[name] = choice
    return choices


def ensemble_outputs(
    models: Sequence[FlexibleMultiTaskModel], dm: CompositionDataModule, stage: str
) -> tuple[list[StageOutputs], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every member's raw outputs on ``stage`` (:func:`collect_outputs`) and, per task, the members' mean physical
    prediction (float64; each member's floored at the task's lower bound before averaging; classification: the
    mean class probabilities) and the standard deviation of their raw (not floored) physical outputs (``ddof=0``,
    uncalibrated; :func:`fm_engine.models.model.members_mean_and_spread`), rows in the order of the first member's
    outputs (the same for every member: one data module)."""
    collected = [collect_outputs(model, dm, stage) for model in models]
    means: dict[str, np.ndarray] = {}
    stds: dict[str, np.ndarray] = {}
    for name in collected[0].outputs:
        for member in collected[1:]:
            if not np.array_equal(member.rows[name], collected[0].rows[name]):  # cannot happen with one data module
                raise RuntimeError(f"ensemble members were evaluated on different {stage} rows of task '{name}'")
        raw = [
            model.to_physical(name, c.outputs[name], floored=False) for model, c in zip(models, collected, strict=True)
        ]
        means[name], stds[name] = members_mean_and_spread(models, name, raw)
    return collected, means, stds


def prediction_frames(model: FlexibleMultiTaskModel, dm: CompositionDataModule, stage: str) -> dict[str, pd.DataFrame]:
    """Per task, one row per labelled composition of ``stage`` (per curve point for sequence tasks): the
    true and predicted values in the task's unit (classification: class names and class probabilities).
    One pass over the split serves every task."""
    collected = collect_outputs(model, dm, stage)
    return {task: _prediction_frame(model, dm, collected, task, stage) for task in model.tasks}


def _prediction_frame(
    model: FlexibleMultiTaskModel, dm: CompositionDataModule, collected: StageOutputs, task: str, stage: str
) -> pd.DataFrame:
    spec = model.tasks[task]
    if task not in collected.outputs:
        return pd.DataFrame(columns=["composition", "split", "true", "predicted"])
    rows = collected.rows[task]
    frame = pd.DataFrame({"composition": np.asarray(dm.keys, dtype=object)[rows], "split": stage})
    if spec.type is TaskType.KERNEL_REGRESSION:
        frame["t"] = collected.t[task]
        frame["t_unit"] = spec.t_unit
    true = collected.targets[task].numpy()
    predicted = model.to_physical(task, collected.outputs[task]).numpy()
    if spec.type is TaskType.CLASSIFICATION:
        classes = np.asarray(spec.classes, dtype=object)
        frame["true"] = classes[true]
        frame["predicted"] = classes[model.predicted_classes(task, predicted)]
        for index, name in enumerate(classes):
            frame[f"p_{name}"] = predicted[:, index]
        return frame
    if true.ndim > 1:
        for j in range(true.shape[1]):
            frame[f"true_{j}"] = true[:, j]
            frame[f"predicted_{j}"] = predicted[:, j]
    else:
        frame["true"] = true
        frame["predicted"] = predicted
    frame["unit"] = spec.unit
    return frame


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
