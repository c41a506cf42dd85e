"""Which weights a run keeps: the running average of the weights, the best-validation weights and the
early-stopping count. One owner for ``fm train`` (:mod:`fm_engine.training.callbacks`) and ``fm-trainer``
(:mod:`fm_engine.trainer_cli`); plain torch, no Lightning."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from fm_engine.training.config import check_ema_decay


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


class AveragedWeights:
    """The optional :class:`WeightAverage` of a run (``decay`` None: off) and its resume state.

    The average is made by :meth:`attach` once the model exists; a state loaded before that (Lightning
    restores checkpoints before or after ``setup``) waits and is applied then.
    """

    def __init__(self, decay: float | None) -> None:
        check_ema_decay(decay)
        self.decay = decay
        self.average: WeightAverage | None = None
        self._pending: dict[str, Any] | None = None

    def attach(self, model: torch.nn.Module) -> None:
        """Start averaging ``model`` (once; nothing when off)."""
        if self.decay and self.average is None:
            self.average = WeightAverage(model, self.decay)
            self._apply_pending()

    def update(self, model: torch.nn.Module) -> None:
        """After an optimizer step of ``model``."""
        if self.average is not None:
            self.average.update(model)

    def judged(self, model: torch.nn.Module) -> torch.nn.Module:
        """The weights that validation, best-weights tracking and export use: the average, or ``model``."""
        return self.average.model if self.average is not None else model

    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the average into ``model`` (nothing when off)."""
        if self.average is not None:
            model.load_state_dict(self.average.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """``{}`` when off."""
        return self.average.state_dict() if self.average is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self._pending = state or None
        self._apply_pending()

    def _apply_pending(self) -> None:
        if self.average is not None and self._pending is not None:
            self.average.load_state_dict(self._pending)
            self._pending = None


@dataclass
class BestWeights:
    """The lowest validation loss seen, its epoch and a copy of the weights that scored it, and how many
    epochs have passed without an improvement of more than ``min_delta`` (early stopping's count).

    ``patience``: epochs without improvement before :attr:`should_stop` (None: never; 0: at the first
    epoch that does not improve).
    """

    patience: int | None = None
    min_delta: float = 0.0
    best_loss: float = float("inf")
    best_epoch: int = -1
    wait: int = 0
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def observe(self, loss: float, epoch: int, model: torch.nn.Module) -> bool:
        """Record epoch ``epoch``'s validation ``loss`` of ``model``; True if it is the new best (a copy of
        its weights is kept). A non-finite loss is never an improvement."""
        if math.isfinite(loss) and loss < self.best_loss - self.min_delta:
            self.best_loss = loss
            self.best_epoch = epoch
            self.wait = 0
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        self.wait += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True after ``patience`` epochs without improvement (never right after an improvement)."""
        return self.patience is not None and self.wait >= max(self.patience, 1)

    def restore(self, model: torch.nn.Module) -> bool:
        """Load the best weights into ``model``; False (model unchanged) if none were kept."""
        if self.state is None:
            return False
        model.load_state_dict(copy.deepcopy(self.state))
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_state": self.state or {}}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.wait = int(state.get("wait", 0))
        self.state = dict(state["best_state"]) or None
