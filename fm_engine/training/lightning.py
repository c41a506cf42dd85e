"""The Lightning training module (the callbacks of a run are in :mod:`fm_engine.training.callbacks`)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from fm_engine.data import TaskBatch
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.training.config import OptimizerSection


class MultiTaskModule(L.LightningModule):
    """Wraps a :class:`FlexibleMultiTaskModel`: masked multi-task loss, one AdamW optimizer."""

    def __init__(
        self,
        model: FlexibleMultiTaskModel,
        *,
        lr: float = OptimizerSection.lr,
        weight_decay: float = OptimizerSection.weight_decay,
        scheduler: str = OptimizerSection.scheduler,
        encoder_lr_scale: float = 1.0,
        slow_heads: tuple[str, ...] = (),
        slow_heads_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if scheduler not in ("cosine", "none"):
            raise ValueError(f"unknown scheduler '{scheduler}' (cosine or none)")
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler = scheduler
        self.encoder_lr_scale = encoder_lr_scale  # the encoder's lr = lr * this (a run from a checkpoint)
        # heads that learn at lr * slow_heads_lr_scale (a run from a checkpoint: the start's kept heads)
        self.slow_heads = tuple(slow_heads)
        self.slow_heads_lr_scale = slow_heads_lr_scale
        self.step_losses: dict[str, torch.Tensor] = {}

    def training_step(self, batch: TaskBatch, batch_idx: int) -> torch.Tensor:
        losses = self.model.task_losses(batch.x, batch.targets, batch.masks, batch.t)
        total = self.model.total_loss(losses)
        self.step_losses = {"loss": total.detach(), **{k: v.detach() for k, v in losses.items()}}
        return total

    def configure_optimizers(self) -> Any:
        """AdamW; with ``cosine`` the learning rate (of each parameter group) decays per epoch to 1 % over
        ``max_epochs``. With an ``encoder_lr_scale`` other than 1 the encoder is a parameter group of its own at
        ``lr * encoder_lr_scale`` (every trainable parameter is in the optimizer, also one frozen for the first
        epochs only), and so are the ``slow_heads`` at ``lr * slow_heads_lr_scale``."""
        scaled = [(list(self.model.encoder.parameters()), self.encoder_lr_scale)]
        scaled += [(list(self.model.heads[name].parameters()), self.slow_heads_lr_scale) for name in self.slow_heads]
        scaled = [(params, scale) for params, scale in scaled if scale != 1.0]
        if not scaled:
            parameters: Any = [p for p in self.model.parameters() if p.requires_grad]
        else:
            grouped = {id(p) for params, _ in scaled for p in params}
            parameters = [{"params": params, "lr": self.lr * scale} for params, scale in scaled]
            rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in grouped]
            parameters.append({"params": rest})
        optimizer = torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay, foreach=True)
        if self.scheduler == "none" or self.trainer is None or not self.trainer.max_epochs:
            return optimizer
        epochs = max(self.trainer.max_epochs, 1)
        if isinstance(parameters[0], dict):  # each group decays to 1 % of its own rate
            schedule: Any = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda epoch: 0.01 + 0.99 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2
            )
        else:
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.01 * self.lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
