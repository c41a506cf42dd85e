"""The Lightning training module (the callbacks of a run are in :mod:`fm_engine.training.callbacks`)."""

from __future__ import annotations

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
    ) -> None:
        super().__init__()
        if scheduler not in ("cosine", "none"):
            raise ValueError(f"unknown scheduler '{scheduler}' (cosine or none)")
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler = scheduler
        self.encoder_lr_scale = encoder_lr_scale  # the encoder's lr = lr * this (a run from a checkpoint)
        self.step_losses: dict[str, torch.Tensor] = {}

    def training_step(self, batch: TaskBatch, batch_idx: int) -> torch.Tensor:
        losses = self.model.task_losses(batch.x, batch.targets, batch.masks, batch.t)
        total = self.model.total_loss(losses)
        self.step_losses = {"loss": total.detach(), **{k: v.detach() for k, v in losses.items()}}
        return total

    def configure_optimizers(self) -> Any:
        """AdamW; with ``cosine`` the learning rate decays per epoch to 1 % over ``max_epochs``. With an
        ``encoder_lr_scale`` other than 1 the encoder is a parameter group of its own at ``lr * encoder_lr_scale``
        (every trainable parameter is in the optimizer, also one frozen for the first epochs only)."""
        if self.encoder_lr_scale == 1.0:
            parameters: Any = [p for p in self.model.parameters() if p.requires_grad]
        else:
            encoder = {id(p) for p in self.model.encoder.parameters()}
            parameters = [
                {"params": list(self.model.encoder.parameters()), "lr": self.lr * self.encoder_lr_scale},
                {"params": [p for p in self.model.parameters() if p.requires_grad and id(p) not in encoder]},
            ]
        optimizer = torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay, foreach=True)
        if self.scheduler == "none" or self.trainer is None or not self.trainer.max_epochs:
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(self.trainer.max_epochs, 1), eta_min=0.01 * self.lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
