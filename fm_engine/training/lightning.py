"""Lightning pieces: the training module and the callback that validates, stops early and writes run files."""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fm_engine.data import CompositionDataModule, TaskBatch
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.run_lock import own_identity
from fm_engine.training.config import OptimizerSection, check_ema_decay
from fm_engine.training.evaluate import evaluate, flat_metrics
from fm_engine.training.run_files import RunDirectory, WallClock, now_iso


class MultiTaskModule(L.LightningModule):
    """Wraps a :class:`FlexibleMultiTaskModel`: masked multi-task loss, one AdamW optimizer."""

    def __init__(
        self,
        model: FlexibleMultiTaskModel,
        *,
        lr: float = OptimizerSection.lr,
        weight_decay: float = OptimizerSection.weight_decay,
        scheduler: str = OptimizerSection.scheduler,
    ) -> None:
        super().__init__()
        if scheduler not in ("cosine", "none"):
            raise ValueError(f"unknown scheduler '{scheduler}' (cosine or none)")
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler = scheduler
        self.step_losses: dict[str, torch.Tensor] = {}

    def training_step(self, batch: TaskBatch, batch_idx: int) -> torch.Tensor:
        losses = self.model.task_losses(batch.x, batch.targets, batch.masks, batch.t)
        total = self.model.total_loss(losses)
        self.step_losses = {"loss": total.detach(), **{k: v.detach() for k, v in losses.items()}}
        return total

    def configure_optimizers(self) -> Any:
        """AdamW; with ``cosine`` the learning rate decays per epoch to 1 % over ``max_epochs``."""
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay, foreach=True)
        if self.scheduler == "none" or self.trainer is None or not self.trainer.max_epochs:
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(self.trainer.max_epochs, 1), eta_min=0.01 * self.lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


class WeightAverage:
    """Exponential moving average of a model's weights and buffers, updated after every optimizer step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short runs are not
    dominated by the initial weights. Integer buffers (BatchNorm's batch counter) are copied.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        check_ema_decay(decay)
        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        device = next(model.parameters()).device
        if next(self.model.parameters()).device != device:  # the copy was made before the model was moved
            self.model.to(device)
        weight = 1.0 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        averages, currents = [], []
        for average, current in zip(self._tensors(self.model), self._tensors(model), strict=True):
            if average.is_floating_point():
                averages.append(average)
                currents.append(current.detach())
            else:
                average.copy_(current)
        torch._foreach_lerp_(averages, currents, weight)  # one fused update (as torch.optim.swa_utils does)
        self.updates += 1

    @staticmethod
    def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *model.buffers()]

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "state": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["state"])


class RunMonitor(L.Callback):
    """Validation in physical units after every epoch, early stopping with best-weights restore,
    run files (status.json, metrics.jsonl, last.ckpt) and cancellation on SIGTERM.

    status.json's ``wall_time_s`` is ``clock``'s total (all segments of a resumed run). On a resumed
    fit, the metrics records of the epochs being repeated are dropped first (one record per epoch).

    Validation is a full pass over the validation split on every rank (identical decisions in DDP).
    ``monitor_tasks`` limits the early-stopping loss to those tasks (default: all). With ``ema_decay``
    the validation, the early stopping and the kept best weights are those of the
    :class:`WeightAverage` of the trained weights.
    """

    def __init__(
        self,
        run: RunDirectory,
        dm: CompositionDataModule,
        *,
        patience: int = 10,
        min_delta: float = 0.0,
        step_interval_s: float = 1.0,
        resume_interval_s: float = 10.0,
        write_files: bool = True,
        monitor_tasks: list[str] | None = None,
        ema_decay: float | None = None,
        clock: WallClock | None = None,
    ) -> None:
        self.run = run
        self.clock = clock or WallClock()
        self.dm = dm
        self.patience = patience
        self.min_delta = min_delta
        self.step_interval_s = step_interval_s
        self.resume_interval_s = resume_interval_s
        self._last_resume_save = float("-inf")
        self.write_files = write_files
        self.monitor_tasks = monitor_tasks
        self.ema_decay = ema_decay
        self.average: WeightAverage | None = None
        self._pending_average: dict[str, Any] | None = None
        self.best_loss = float("inf")
        self.best_epoch = -1
        self.wait = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.cancelled = False
        self._sums: dict[str, float] = {}
        self._count = 0
        self._last_write = 0.0
        self._epoch_start = 0.0
        self._fit_start = 0.0
        self.epoch_seconds: list[float] = []
        self.samples_seen = 0

    # ---------------------------------------------------------------- state for --resume
    def state_dict(self) -> dict[str, Any]:
        return {
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "best_state": self.best_state or {},
            "average": self.average.state_dict() if self.average is not None else {},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_loss = float(state_dict["best_loss"])
        self.best_epoch = int(state_dict["best_epoch"])
        self.wait = int(state_dict["wait"])
        self.best_state = dict(state_dict["best_state"]) or None
        self._pending_average = state_dict.get("average") or None
        self._apply_pending_average()

    def _apply_pending_average(self) -> None:
        if self.average is not None and self._pending_average is not None:
            self.average.load_state_dict(self._pending_average)
            self._pending_average = None

    def evaluated_model(self, pl_module: L.LightningModule) -> FlexibleMultiTaskModel:
        """The weights that validation and early stopping judge: the running average, or the trained model."""
        return self.average.model if self.average is not None else pl_module.model  # type: ignore[return-value]

    # ---------------------------------------------------------------- hooks
    def _files(self, trainer: L.Trainer) -> bool:
        return self.write_files and trainer.is_global_zero

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.ema_decay and self.average is None:
            self.average = WeightAverage(pl_module.model, self.ema_decay)
            self._apply_pending_average()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        if self._files(trainer):
            self.run.update_status(
                state="running",
                **own_identity(),
                started_at=now_iso(),
                wall_time_s=round(self.clock.total(), 2),
                max_epochs=trainer.max_epochs,
                steps_per_epoch=trainer.num_training_batches,
                epoch=trainer.current_epoch,
                step=trainer.global_step,
                message="training",
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._files(trainer):  # the epoch counter is restored by now: a resumed run repeats from here
            self.run.drop_metrics_from(trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sums = {}
        self._count = 0
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.average is not None:
            self.average.update(pl_module.model)
        losses = pl_module.step_losses  # type: ignore[attr-defined]
        for name, value in losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value)
        self._count += 1
        self.samples_seen += len(batch.x)
        now = time.perf_counter()
        if self._files(trainer) and now - self._last_write >= self.step_interval_s:
            self._last_write = now
            self.run.append_metrics(
                {"kind": "step", "epoch": trainer.current_epoch, "step": trainer.global_step,
                 **{f"train/{k}": float(v) for k, v in losses.items()}}
            )  # fmt: skip
            self.run.update_status(
                epoch=trainer.current_epoch, step=trainer.global_step, eta_seconds=self._eta(trainer),
                wall_time_s=round(self.clock.total(), 2),
            )  # fmt: skip

    def _eta(self, trainer: L.Trainer) -> float | None:
        """Seconds left if training runs to max_epochs (early stopping may end it sooner)."""
        elapsed = time.perf_counter() - self._fit_start
        steps_total = (trainer.max_epochs or 0) * max(trainer.num_training_batches, 1)
        done = max(trainer.global_step, 1)
        return max(elapsed / done * (steps_total - done), 0.0) if steps_total else None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)
        model = self.evaluated_model(pl_module)
        validation = evaluate(model, self.dm, "val", loss_tasks=self.monitor_tasks)
        epoch = trainer.current_epoch
        improved = validation.loss < self.best_loss - self.min_delta
        if improved:
            self.best_loss = validation.loss
            self.best_epoch = epoch
            self.wait = 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.should_stop = True
        train_means = {f"train/{k}": v / max(self._count, 1) for k, v in self._sums.items()}
        if self._files(trainer):
            self.run.append_metrics(
                {"kind": "epoch", "epoch": epoch, "step": trainer.global_step,
                 "epoch_seconds": self.epoch_seconds[-1], "best_epoch": self.best_epoch,
                 **train_means, **flat_metrics(validation)}
            )  # fmt: skip
        if time.perf_counter() - self._last_resume_save >= self.resume_interval_s or trainer.should_stop:
            self._save_resume_state(trainer)
        if self._files(trainer):
            self.run.update_status(
                epoch=epoch + 1,
                step=trainer.global_step,
                eta_seconds=self._eta(trainer),
                best_epoch=self.best_epoch,
                best_val_loss=self.best_loss,
                wall_time_s=round(self.clock.total(), 2),
            )

    def _save_resume_state(self, trainer: L.Trainer) -> None:
        """Lightning checkpoint for ``--resume`` (after the first epoch, then at most every
        ``resume_interval_s`` seconds, and on SIGTERM): written to a temp file, then renamed (atomic)."""
        self._last_resume_save = time.perf_counter()
        tmp = self.run.path / ".last.ckpt.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # optimizer state too, for --resume
        if trainer.is_global_zero:
            os.replace(tmp, self.run.resume_path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException | KeyboardInterrupt):
            self.cancelled = True
            self._save_resume_state(trainer)
            if self._files(trainer):
                self.run.update_status(
                    state="cancelled",
                    finished_at=now_iso(),
                    message="cancelled; continue with --resume",
                    wall_time_s=round(self.clock.total(), 2),
                )

    def restore_best(self, model: FlexibleMultiTaskModel) -> None:
        if self.best_state is not None:
            model.load_state_dict(copy.deepcopy(self.best_state))
