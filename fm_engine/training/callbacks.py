"""The Lightning callbacks of an ``fm train`` run, one job each (see :func:`run_callbacks` for their order).

* :class:`EpochTimer`: seconds per training epoch and samples seen (the model card's throughput);
* :class:`WeightAveraging`: the running average of the weights (``trainer.ema_decay``);
* :class:`ModelSelection`: validation after every epoch, the best weights, early stopping;
* :class:`RunRecorder`: the run files a reader follows live (status.json, metrics.jsonl, the ETA);
* :class:`ResumeState`: last.ckpt for ``--resume``, and cancellation on SIGTERM / Ctrl-C.

What they decide lives in :mod:`fm_engine.training.weights`, shared with ``fm-trainer``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fm_engine.data import CompositionDataModule
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.run_lock import own_identity
from fm_engine.training.config import TrainerSection
from fm_engine.training.evaluate import StageEvaluation, evaluate, flat_metrics
from fm_engine.training.run_files import RunDirectory, WallClock, now_iso
from fm_engine.training.weights import AveragedWeights, BestWeights

LEGACY_STATE_KEY = "RunMonitor"  # the one callback that held all resume state in last.ckpt files before the split


@dataclass
class FitStats:
    """What the model card reports about training: the best epoch and its validation loss (normalised
    units), the seconds of each training epoch and the training samples seen."""

    best_epoch: int = -1
    best_loss: float = float("inf")
    epoch_seconds: list[float] = field(default_factory=list)
    samples_seen: int = 0


class EpochTimer(L.Callback):
    """Wall seconds of each training epoch (``epoch_seconds``) and the training samples seen."""

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self.samples_seen = 0
        self._epoch_start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.samples_seen += len(batch.x)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)

    def stats(self, best: BestWeights) -> FitStats:
        """The card's training figures, with ``best``'s epoch and loss."""
        return FitStats(best_epoch=best.best_epoch, best_loss=best.best_loss, epoch_seconds=list(self.epoch_seconds),
                        samples_seen=self.samples_seen)  # fmt: skip


class WeightAveraging(L.Callback):
    """Keeps the :class:`~fm_engine.training.weights.AveragedWeights` of the module's model (``decay``
    None: off), updated after every optimizer step; its state travels in last.ckpt."""

    def __init__(self, decay: float | None) -> None:
        self.weights = AveragedWeights(decay)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.weights.attach(pl_module.model)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.weights.update(pl_module.model)

    def state_dict(self) -> dict[str, Any]:
        return self.weights.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.weights.load_state_dict(state_dict)


class ModelSelection(L.Callback):
    """After every training epoch: a full validation pass in physical units (on every rank, so DDP ranks
    decide alike), the best weights kept (:class:`~fm_engine.training.weights.BestWeights`) and early
    stopping after ``patience`` epochs without an improvement of more than ``min_delta``.

    ``monitor_tasks`` limits the judged loss to those tasks (default: all). With ``averaging`` on, the
    averaged weights are the ones validated and kept.
    """

    def __init__(
        self,
        dm: CompositionDataModule,
        *,
        patience: int,
        min_delta: float = 0.0,
        monitor_tasks: list[str] | None = None,
        averaging: WeightAveraging | None = None,
    ) -> None:
        self.dm = dm
        self.monitor_tasks = monitor_tasks
        self.averaging = averaging
        self.best = BestWeights(patience=patience, min_delta=min_delta)
        self.validation: StageEvaluation | None = None  # the last epoch's

    def judged_model(self, pl_module: L.LightningModule) -> FlexibleMultiTaskModel:
        """The weights that are validated and kept: the running average, or the trained model."""
        model = pl_module.model
        return self.averaging.weights.judged(model) if self.averaging is not None else model  # type: ignore[return-value]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = self.judged_model(pl_module)
        self.validation = evaluate(model, self.dm, "val", loss_tasks=self.monitor_tasks)
        self.best.observe(self.validation.loss, trainer.current_epoch, model)
        if self.best.should_stop:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return self.best.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best.load_state_dict(state_dict)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """A last.ckpt written before the split keeps its best weights and average (under one key)."""
        states = checkpoint.get("callbacks") or {}
        legacy = states.pop(LEGACY_STATE_KEY, None)
        if legacy:
            states.setdefault(self.state_key, legacy)
            if self.averaging is not None and legacy.get("average"):
                states.setdefault(self.averaging.state_key, legacy["average"])


def remaining_seconds(elapsed_s: float, steps_done: int, steps_total: int) -> float | None:
    """Seconds left at the pace so far (``elapsed_s`` for ``steps_done`` steps) until ``steps_total``
    steps; None when the total is unknown (0)."""
    done = max(steps_done, 1)
    return max(elapsed_s / done * (steps_total - done), 0.0) if steps_total else None


class RunRecorder(L.Callback):
    """The run files a reader follows (rank 0 only): status.json (state, epoch, step, ETA, best epoch,
    ``wall_time_s`` = ``clock``'s total over all segments of a resumed run) and metrics.jsonl (a ``step``
    record of the training losses at most every ``step_interval_s`` seconds, an ``epoch`` record with the
    epoch's mean training losses and ``selection``'s validation). On a resumed fit, the records of the
    epochs being repeated are dropped first (one record per epoch).
    """

    def __init__(
        self,
        run: RunDirectory,
        *,
        clock: WallClock,
        timer: EpochTimer,
        selection: ModelSelection,
        step_interval_s: float = 1.0,
    ) -> None:
        self.run = run
        self.clock = clock
        self.timer = timer
        self.selection = selection
        self.step_interval_s = step_interval_s
        self._sums: dict[str, float] = {}
        self._count = 0
        self._last_write = 0.0
        self._fit_start = 0.0

    def _eta(self, trainer: L.Trainer) -> float | None:
        """Seconds left if training runs to max_epochs (early stopping may end it sooner)."""
        steps_total = (trainer.max_epochs or 0) * max(trainer.num_training_batches, 1)
        return remaining_seconds(time.perf_counter() - self._fit_start, trainer.global_step, steps_total)

    def _wall_time(self) -> float:
        return round(self.clock.total(), 2)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        if trainer.is_global_zero:
            self.run.update_status(
                state="running", **own_identity(), started_at=now_iso(), wall_time_s=self._wall_time(),
                max_epochs=trainer.max_epochs, steps_per_epoch=trainer.num_training_batches,
                epoch=trainer.current_epoch, step=trainer.global_step, message="training",
            )  # fmt: skip

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # the epoch counter is restored by now: a resumed run repeats from here
            self.run.drop_metrics_from(trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sums = {}
        self._count = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        losses = pl_module.step_losses  # type: ignore[attr-defined]
        for name, value in losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value)
        self._count += 1
        now = time.perf_counter()
        if trainer.is_global_zero and now - self._last_write >= self.step_interval_s:
            self._last_write = now
            self.run.append_metrics(
                {"kind": "step", "epoch": trainer.current_epoch, "step": trainer.global_step,
                 **{f"train/{k}": float(v) for k, v in losses.items()}}
            )  # fmt: skip
            self.run.update_status(epoch=trainer.current_epoch, step=trainer.global_step,
                                   eta_seconds=self._eta(trainer), wall_time_s=self._wall_time())  # fmt: skip

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self.selection.validation is None:
            return
        best = self.selection.best
        train_means = {f"train/{k}": v / max(self._count, 1) for k, v in self._sums.items()}
        self.run.append_metrics(
            {"kind": "epoch", "epoch": trainer.current_epoch, "step": trainer.global_step,
             "epoch_seconds": self.timer.epoch_seconds[-1], "best_epoch": best.best_epoch,
             **train_means, **flat_metrics(self.selection.validation)}
        )  # fmt: skip
        self.run.update_status(
            epoch=trainer.current_epoch + 1, step=trainer.global_step, eta_seconds=self._eta(trainer),
            best_epoch=best.best_epoch, best_val_loss=best.best_loss, wall_time_s=self._wall_time(),
        )  # fmt: skip


class ResumeState(L.Callback):
    """last.ckpt for ``--resume`` (the weights, the optimizer and every callback's state): after the first
    epoch, then at most every ``interval_s`` seconds and when training stops; written to a temp file, then
    renamed (atomic). On SIGTERM or Ctrl-C the state is saved and the run marked ``cancelled``."""

    def __init__(self, run: RunDirectory, *, clock: WallClock, interval_s: float = 10.0) -> None:
        self.run = run
        self.clock = clock
        self.interval_s = interval_s
        self._last_save = float("-inf")

    def save(self, trainer: L.Trainer) -> None:
        self._last_save = time.perf_counter()
        tmp = self.run.path / ".last.ckpt.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # optimizer state too, for --resume
        if trainer.is_global_zero:
            os.replace(tmp, self.run.resume_path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if time.perf_counter() - self._last_save >= self.interval_s or trainer.should_stop:
            self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException | KeyboardInterrupt):
            self.save(trainer)
            if trainer.is_global_zero:
                self.run.update_status(state="cancelled", finished_at=now_iso(),
                                       message="cancelled; continue with --resume",
                                       wall_time_s=round(self.clock.total(), 2))  # fmt: skip


class EncoderWarmup(L.Callback):
    """Freeze the encoder (weights and norm statistics) for the first ``epochs`` training epochs, then train it
    (``finetune.freeze_encoder_epochs``: the new heads first learn on the start's features). Decided from the
    epoch number alone, so a resumed run freezes alike."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.model.freeze_encoder(trainer.current_epoch < self.epochs)


@dataclass
class RunCallbacks:
    """The callbacks of one ``fm train`` run; :meth:`as_list` gives them in the order they must run at an
    epoch's end (time it, validate and choose, record, then save the resume state)."""

    timer: EpochTimer
    averaging: WeightAveraging
    selection: ModelSelection
    recorder: RunRecorder
    resume: ResumeState

    def as_list(self) -> list[L.Callback]:
        return [self.timer, self.averaging, self.selection, self.recorder, self.resume]

    def stats(self) -> FitStats:
        return self.timer.stats(self.selection.best)


def run_callbacks(
    run: RunDirectory,
    dm: CompositionDataModule,
    trainer: TrainerSection,
    *,
    clock: WallClock,
    monitor_tasks: list[str] | None = None,
) -> RunCallbacks:
    """The callbacks of a run into ``run`` on ``dm`` with the ``trainer`` settings (patience, min_delta,
    ema_decay, resume_every_s); ``monitor_tasks``: see :class:`ModelSelection`."""
    timer = EpochTimer()
    averaging = WeightAveraging(trainer.ema_decay)
    selection = ModelSelection(dm, patience=trainer.patience, min_delta=trainer.min_delta,
                               monitor_tasks=monitor_tasks, averaging=averaging)  # fmt: skip
    return RunCallbacks(
        timer=timer,
        averaging=averaging,
        selection=selection,
        recorder=RunRecorder(run, clock=clock, timer=timer, selection=selection),
        resume=ResumeState(run, clock=clock, interval_s=trainer.resume_every_s),
    )
