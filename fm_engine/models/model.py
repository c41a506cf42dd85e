"""FlexibleMultiTaskModel: descriptor -> (input standardisation) -> encoder -> tanh -> task heads (+ optional
autoencoder).

Heads work in normalised target space; :class:`TargetScaler` (stored in the config and the checkpoint)
maps to and from physical units. ``forward`` takes ``t`` in physical units for sequence tasks.

Input standardisation (``ModelConfig.standardise_inputs``): the descriptor is z-scored per feature,
``(x - input_mean) / input_std``, with the two vectors fitted on the training split
(:meth:`FlexibleMultiTaskModel.fit_input_scaling`) and stored as buffers in the weights. KMD features of alloys
that differ by a fraction of a per cent of a minor element differ by about 0.001-0.01 while the features span
[0, 1]; standardised, such differences reach the encoder at the scale of its other inputs. The map is affine, so
predictions stay differentiable in the composition weights. A checkpoint without the setting (older ones) has
no buffers and feeds ``x`` unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fm_engine.config import check_range
from fm_engine.descriptors import DescriptorSpec
from fm_engine.models.encoders import EncoderConfig, build_encoder
from fm_engine.models.heads import AutoencoderHead, ClassificationHead, KernelRegressionHead, RegressionHead
from fm_engine.tasks import TaskSpec, TaskType, check_unique_names
from fm_engine.thresholds import hard_labels

AUTOENCODER = "autoencoder"


@dataclass
class TargetScaler:
    """Per-task normalisation fitted on the training split: ``y_norm = (y - mean) / std``.

    ``mean``/``std`` are lists (one entry per output; scalar tasks have one). Sequence tasks also
    normalise ``t`` and record the training range ``[t_min, t_max]`` (the default prediction grid).
    Classification tasks use the identity.
    """

    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])
    t_mean: float = 0.0
    t_std: float = 1.0
    t_min: float | None = None
    t_max: float | None = None
    # regression / sequence tasks: no prediction is reported below ``floor`` (physical units; None: no bound),
    # and for an automatic bound the share of training targets at it (see fm_engine.floors)
    floor: float | None = None
    floor_share: float | None = None

    @property
    def output_dim(self) -> int:
        return len(self.mean)


@dataclass
class AutoencoderConfig:
    enabled: bool = True
    hidden_dims: list[int] = field(default_factory=lambda: [256])
    loss_weight: float = 0.1

    def __post_init__(self) -> None:
        for i, dim in enumerate(self.hidden_dims):
            check_range(f"model.autoencoder.hidden_dims[{i}]", dim, low=1)
        check_range("model.autoencoder.loss_weight", self.loss_weight, low=0)


@dataclass
class ModelConfig:
    """Everything that defines the network's shape; saved in every checkpoint."""

    input_dim: int
    n_tokens: int
    tasks: list[TaskSpec]
    scalers: dict[str, TargetScaler]
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    loss_balancer: bool = False
    descriptor: DescriptorSpec = field(default_factory=DescriptorSpec)
    # z-score the descriptor with the buffers ``input_mean`` / ``input_std`` (see the module docstring); False
    # (checkpoints written before it existed): the descriptor goes to the encoder unchanged.
    standardise_inputs: bool = False
    # binary classification task -> decision threshold on the probability of its second class (chosen on the
    # validation split at the end of training, or fixed by the task's ``decision_threshold``; see
    # fm_engine.thresholds). A task without one (multi-class, older checkpoints) predicts its most probable class.
    decision_thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_dim": self.input_dim,
            "n_tokens": self.n_tokens,
            "tasks": [task.to_dict() for task in self.tasks],
            "scalers": {name: asdict(scaler) for name, scaler in self.scalers.items()},
            "encoder": self.encoder.to_dict(),
            "autoencoder": asdict(self.autoencoder),
            "loss_balancer": self.loss_balancer,
            "descriptor": self.descriptor.to_dict(),
            "standardise_inputs": self.standardise_inputs,
            "decision_thresholds": dict(self.decision_thresholds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        return cls(
            input_dim=int(data["input_dim"]),
            n_tokens=int(data["n_tokens"]),
            tasks=[TaskSpec.from_dict(task) for task in data["tasks"]],
            scalers={name: TargetScaler(**values) for name, values in data["scalers"].items()},
            encoder=EncoderConfig(**data["encoder"]),
            autoencoder=AutoencoderConfig(**data["autoencoder"]),
            loss_balancer=bool(data["loss_balancer"]),
            descriptor=DescriptorSpec.from_dict(data["descriptor"]),
            standardise_inputs=bool(data.get("standardise_inputs", False)),
            decision_thresholds={str(k): float(v) for k, v in dict(data.get("decision_thresholds") or {}).items()},
        )


# Smallest per-feature scale of the input standardisation (descriptor units, features in [0, 1]): amplifies a
# feature at most 10x. Measured (bench/small_data.py, 100-row bulk-modulus subsets): with 1e-3, features that are
# constant in a small diverse training set blow up on test compositions (MAE 25.0 GPa, 0.03: 21.4, 0.1: 20.8,
# no standardisation 20.2); a minor-element property is learned as well with 0.1 as with 1e-3.
INPUT_STD_FLOOR = 0.1

HUBER_BETA = 0.5  # in units of the task's training standard deviation


def regression_loss(task: TaskSpec, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The task's regression loss on normalised values: ``l1`` (mean absolute error), ``huber`` (quadratic
    within ``HUBER_BETA`` standard deviations, linear beyond) or ``mse``."""
    if task.loss == "l1":
        return F.l1_loss(prediction, target)
    if task.loss == "huber":
        return F.smooth_l1_loss(prediction, target, beta=HUBER_BETA)
    return F.mse_loss(prediction, target)


def flatten_curves(
    t: Sequence[torch.Tensor], y: Sequence[torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Lists of per-sample curves -> flat ``t`` (P,), sample ``index`` (P,), flat ``y`` (P,) or None."""
    lengths = torch.tensor([len(v) for v in t], dtype=torch.long)
    index = torch.repeat_interleave(torch.arange(len(t)), lengths)
    flat_t = torch.cat(list(t)) if len(t) else torch.zeros(0)
    flat_y = torch.cat(list(y)) if y is not None and len(y) else None
    return flat_t, index.to(flat_t.device), flat_y


def members_mean_and_spread(
    models: Sequence[FlexibleMultiTaskModel], name: str, raw: Sequence[torch.Tensor]
) -> tuple[np.ndarray, np.ndarray]:
    """An ensemble's prediction of task ``name`` from its members' raw physical outputs ``raw`` (one per member,
    ``to_physical(..., floored=False)``): the mean of the members' floored outputs (what users get; classification:
    the mean class probabilities) and the population standard deviation of the raw ones (not floored: where every
    member sits at the bound the floored outputs agree exactly while the raw ones still say how unsure the members
    are), both float64 and uncalibrated."""
    floored = [model.apply_floor(name, r).detach().numpy() for model, r in zip(models, raw, strict=True)]
    spread = np.stack([r.detach().numpy() for r in raw]).astype(np.float64).std(axis=0)
    return np.stack(floored).astype(np.float64).mean(axis=0), spread


class FlexibleMultiTaskModel(nn.Module):
    """Multi-task network: ``x -> encoder -> tanh -> {task head}``.

    Outputs (``forward``) are in normalised units: regression (B,) or (B, d); classification logits
    (B, C); kernel regression (P,) values at the requested points; ``autoencoder`` (B, input_dim).
    Use :meth:`to_physical` for physical units.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        check_unique_names(config.tasks)
        self.config = config
        self.encoder = build_encoder(config.input_dim, config.n_tokens, config.encoder)
        if config.standardise_inputs:  # identity until fitted on the training split
            self.register_buffer("input_mean", torch.zeros(config.input_dim))
            self.register_buffer("input_std", torch.ones(config.input_dim))
        self.latent_dim = config.encoder.output_dim
        self.heads = nn.ModuleDict()
        self.log_sigma = nn.ParameterDict()
        self.tasks: dict[str, TaskSpec] = {}
        self._encoder_frozen = False
        self._norm_statistics_frozen = False
        for task in config.tasks:
            self._build_head(task, config.scalers[task.name])
        self.autoencoder = (
            AutoencoderHead(self.latent_dim, config.autoencoder.hidden_dims, config.input_dim)
            if config.autoencoder.enabled
            else None
        )
        if self.autoencoder is not None and config.loss_balancer:
            self.log_sigma[AUTOENCODER] = nn.Parameter(torch.zeros(()))
        for name, threshold in list(config.decision_thresholds.items()):
            self.set_decision_threshold(name, threshold)

    # ------------------------------------------------------------------ task management
    def _build_head(self, task: TaskSpec, scaler: TargetScaler) -> None:
        if task.type is TaskType.REGRESSION:
            head: nn.Module = RegressionHead(self.latent_dim, task.head_hidden_dims, scaler.output_dim)
        elif task.type is TaskType.CLASSIFICATION:
            if not task.classes:
                raise ValueError(f"task '{task.name}': classification needs its class names")
            head = ClassificationHead(self.latent_dim, task.head_hidden_dims, len(task.classes))
            if isinstance(task.class_weights, list):
                head.class_weights.copy_(torch.tensor(task.class_weights))
        else:
            head = KernelRegressionHead(self.latent_dim, task.head_hidden_dims, task.n_kernels)
        self.heads[task.name] = head
        self.tasks[task.name] = task
        self.config.scalers[task.name] = scaler
        if self.config.loss_balancer:
            self.log_sigma[task.name] = nn.Parameter(torch.zeros(()))

    def add_task(self, task: TaskSpec, scaler: TargetScaler | None = None) -> None:
        """Add a task head at runtime (e.g. the next task of a continual-learning sequence)."""
        if task.name in self.tasks or task.name == AUTOENCODER:
            raise ValueError(f"task '{task.name}' already exists")
        device = next(self.parameters()).device
        self._build_head(task, scaler or TargetScaler())
        self.heads[task.name].to(device)
        if task.name in self.log_sigma:
            self.log_sigma[task.name].data = self.log_sigma[task.name].data.to(device)
        self.config.tasks.append(task)

    # ------------------------------------------------------------------ predicted classes
    def decision_threshold(self, name: str) -> float | None:
        """The decision threshold of binary classification task ``name`` (see :mod:`fm_engine.thresholds`), or
        None: the most probable class."""
        return self.config.decision_thresholds.get(name)

    def set_decision_threshold(self, name: str, threshold: float | None) -> None:
        """Set (a probability in (0, 1)) or clear (None) the decision threshold of a binary classification task."""
        if threshold is None:
            self.config.decision_thresholds.pop(name, None)
            return
        task = self.tasks.get(name)
        if task is None or task.type is not TaskType.CLASSIFICATION or len(task.classes or []) != 2:
            raise ValueError(f"decision threshold for '{name}': not a binary classification task of the model")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"decision threshold for '{name}': expected a probability in (0, 1), got {threshold}")
        self.config.decision_thresholds[name] = float(threshold)

    def predicted_classes(self, name: str, proba: np.ndarray) -> np.ndarray:
        """Class indices (n,) of classification task ``name`` from its class probabilities (n, C): its decision
        threshold for a binary task that has one, else the most probable class."""
        return hard_labels(proba, self.decision_threshold(name))

    def remove_tasks(self, *names: str) -> None:
        unknown = [n for n in names if n not in self.tasks]
        if unknown:
            raise ValueError(f"unknown task(s): {', '.join(unknown)}")
        for name in names:
            del self.heads[name]
            del self.tasks[name]
            self.config.scalers.pop(name, None)
            self.config.decision_thresholds.pop(name, None)
            if name in self.log_sigma:
                del self.log_sigma[name]
        self.config.tasks = [t for t in self.config.tasks if t.name not in names]

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the encoder for head-only fine-tuning; its norm statistics stay fixed too."""
        self._encoder_frozen = frozen
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(not frozen)
        self.train(self.training)

    def freeze_norm_statistics(self, frozen: bool = True) -> None:
        """Keep the encoder's batch-norm statistics (running mean and variance) fixed while its weights train:
        in training the batch-norm layers normalise with the stored statistics, as at inference (a fine-tune
        whose batches mix the user's rows and a small replay keeps the start's statistics, which every kept
        head was trained on)."""
        self._norm_statistics_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> FlexibleMultiTaskModel:
        super().train(mode)
        if self._encoder_frozen:
            self.encoder.eval()
        elif self._norm_statistics_frozen:
            for module in self.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # ------------------------------------------------------------------ input standardisation
    def fit_input_scaling(
        self, x: np.ndarray | torch.Tensor, *, floor: float = INPUT_STD_FLOOR, block: int = 65536
    ) -> None:
        """Set the input standardisation from descriptor rows ``x`` (N, input_dim) of the training split:
        per-feature mean and standard deviation, the latter at least ``floor`` (descriptor units), so a
        feature that barely varies in training is not blown up. ``x`` may be memory-mapped: it is read in
        blocks of ``block`` rows (two passes, float64 sums). Needs ``config.standardise_inputs``."""
        if not self.config.standardise_inputs:
            raise ValueError("this model was built without input standardisation (standardise_inputs: false)")
        rows = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x  # numpy or a memory-mapped array
        if rows.ndim != 2 or rows.shape[1] != self.config.input_dim or len(rows) == 0:
            raise ValueError(
                f"input standardisation: expected descriptor rows (N >= 1, {self.config.input_dim}), "
                f"got shape {tuple(rows.shape)}"
            )
        total = np.zeros(rows.shape[1])
        for start in range(0, len(rows), block):  # float64 sums block by block: no float64 copy of all rows
            total += rows[start : start + block].sum(axis=0, dtype=np.float64)
        mean = total / len(rows)
        squares = np.zeros(rows.shape[1])
        for start in range(0, len(rows), block):
            squares += ((rows[start : start + block].astype(np.float64) - mean) ** 2).sum(axis=0)
        std = np.maximum(np.sqrt(squares / len(rows)), floor)
        self.input_mean.copy_(torch.as_tensor(mean, dtype=self.input_mean.dtype))
        self.input_std.copy_(torch.as_tensor(std, dtype=self.input_std.dtype))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input: ``(x - input_mean) / input_std``, or ``x`` for a model without standardisation.
        Affine in ``x``, hence differentiable in the composition weights."""
        if not self.config.standardise_inputs:
            return x
        return (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)

    # ------------------------------------------------------------------ forward
    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output for descriptor rows ``x`` (before the model-level tanh)."""
        return self.encoder(self.standardise(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``h_task = tanh(encoder(standardise(x)))``, shared by every head."""
        return torch.tanh(self.latent(x))

    def normalise_t(self, name: str, t: torch.Tensor) -> torch.Tensor:
        scaler = self.config.scalers[name]
        return (t - scaler.t_mean) / scaler.t_std

    def heads_forward(
        self,
        h: torch.Tensor,
        points: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        *,
        tasks: Iterable[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Task outputs from a latent ``h_task``; ``points[task] = (t, index)`` for sequence tasks."""
        out: dict[str, torch.Tensor] = {}
        for name in tasks if tasks is not None else self.tasks:
            head = self.heads[name]
            if isinstance(head, KernelRegressionHead):
                if points is None or name not in points:
                    continue
                t, index = points[name]
                out[name] = head(h, self.normalise_t(name, t), index)
            else:
                out[name] = head(h)
        if self.autoencoder is not None and (tasks is None or AUTOENCODER in tasks):
            out[AUTOENCODER] = self.autoencoder(h)
        return out

    def forward(
        self, x: torch.Tensor, points: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor]:
        return self.heads_forward(self.encode(x), points)

    # ------------------------------------------------------------------ units
    def to_physical(self, name: str, y: torch.Tensor, *, floored: bool = True) -> torch.Tensor:
        """Normalised regression / sequence output -> physical units (classification: probabilities), at least
        the task's lower bound (:attr:`TargetScaler.floor`, see :mod:`fm_engine.floors`); ``floored=False``: the
        raw physical output, below the bound too (an ensemble's spread: :func:`fm_engine.predict.predict_members`)."""
        task = self.tasks[name]
        if task.type is TaskType.CLASSIFICATION:
            return torch.softmax(y, dim=-1)
        scaler = self.config.scalers[name]
        mean = torch.as_tensor(scaler.mean, dtype=y.dtype, device=y.device)
        std = torch.as_tensor(scaler.std, dtype=y.dtype, device=y.device)
        physical = y * std[0] + mean[0] if y.ndim == 1 or task.type is TaskType.KERNEL_REGRESSION else y * std + mean
        return self.apply_floor(name, physical) if floored else physical

    def apply_floor(self, name: str, physical: torch.Tensor) -> torch.Tensor:
        """Raw physical output of task ``name`` (``to_physical(..., floored=False)``) at least the task's lower bound
        (unchanged without one or for classification): exactly what :meth:`to_physical` returns."""
        scaler = self.config.scalers.get(name)
        if self.tasks[name].type is TaskType.CLASSIFICATION or scaler is None or scaler.floor is None:
            return physical
        # floored forward, identity backward: gradients stay those of the raw output (see fm_engine.floors)
        return physical + (physical.clamp_min(scaler.floor) - physical).detach()

    def to_normalised(self, name: str, y: torch.Tensor) -> torch.Tensor:
        scaler = self.config.scalers[name]
        mean = torch.as_tensor(scaler.mean, dtype=y.dtype, device=y.device)
        std = torch.as_tensor(scaler.std, dtype=y.dtype, device=y.device)
        if y.ndim == 1:
            return (y - mean[0]) / std[0]
        return (y - mean) / std

    # ------------------------------------------------------------------ losses
    def task_losses(
        self,
        x: torch.Tensor,
        targets: Mapping[str, Any],
        masks: Mapping[str, torch.Tensor],
        t: Mapping[str, Sequence[torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Raw masked loss per task (normalised units); tasks without labels in the batch are absent."""
        points: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        curve_targets: dict[str, torch.Tensor] = {}
        for name, task in self.tasks.items():
            if task.type is TaskType.KERNEL_REGRESSION and name in t:
                flat_t, index, flat_y = flatten_curves(t[name], targets[name])
                if len(flat_t):
                    points[name] = (flat_t, index)
                    curve_targets[name] = flat_y  # type: ignore[assignment]
        outputs = self(x, points)
        losses: dict[str, torch.Tensor] = {}
        for name, task in self.tasks.items():
            if name not in masks:
                continue
            mask = masks[name]
            if task.type is TaskType.KERNEL_REGRESSION:
                if name in outputs:
                    target = self.to_normalised(name, curve_targets[name])
                    losses[name] = F.mse_loss(outputs[name], target)
                continue
            if not bool(mask.any()):
                continue
            prediction = outputs[name][mask]
            if task.type is TaskType.CLASSIFICATION:
                head = self.heads[name]
                losses[name] = F.cross_entropy(prediction, targets[name][mask], weight=head.class_weights)
            else:
                losses[name] = regression_loss(task, prediction, self.to_normalised(name, targets[name][mask]))
        if AUTOENCODER in outputs:
            losses[AUTOENCODER] = F.mse_loss(outputs[AUTOENCODER], x)
        return losses

    def total_loss(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum; with the balancer ``0.5 * w * exp(-2 s) * L + s`` per task (Kendall et al. 2018)."""
        total = torch.zeros((), device=next(iter(losses.values())).device) if losses else torch.zeros(())
        for name, loss in losses.items():
            weight = self.config.autoencoder.loss_weight if name == AUTOENCODER else self.tasks[name].loss_weight
            if name in self.log_sigma:
                s = self.log_sigma[name]
                total = total + 0.5 * weight * torch.exp(-2 * s) * loss + s
            else:
                total = total + weight * loss
        return total
