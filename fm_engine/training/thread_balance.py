"""Lightning callback: follow the machine's load with torch's thread count, once per training epoch."""

from __future__ import annotations

import lightning as L

from fm_engine.threads import ThreadPolicy


class ThreadBalancer(L.Callback):
    """At every epoch start, re-measure the other processes' load and set the thread count it calls for
    (see :mod:`fm_engine.threads`); the count of the last epoch is kept in ``threads_per_epoch``."""

    def __init__(self, policy: ThreadPolicy) -> None:
        self.policy = policy
        self.threads_per_epoch: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.threads_per_epoch.append(self.policy.update())
