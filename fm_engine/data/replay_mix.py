"""A fine-tune's epoch: every training row of the run's own tasks, and a fresh draw of the replayed rows.

A run that starts from a checkpoint trains its own tasks beside a replay of the corpus the start's heads were
trained on (about 12,000 rows for the shipped foundation). Passing over every replayed row at every epoch swamps
a few hundred rows of the user's own: a batch of 256 then holds one or two of them, and the schedule sized by all
rows (batch 256, 100 epochs, patience 10) gives them a few dozen passes. With a :class:`ReplayMix`, an epoch is one
pass over the run's own training rows plus ``ratio`` replayed rows per own row, drawn afresh at every epoch
(:class:`ReplayMixSampler`), so the replay still covers its rows over the run and the schedule follows the rows an
epoch trains on. When ``ratio`` x the own rows reaches the replayed rows (e.g. a few thousand rows of one's own),
every replayed row is trained on at every epoch, as without a mix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler


@dataclass(frozen=True)
class ReplayMix:
    """``own_tasks``: the run's own tasks (a training row labelled for any of them is the run's own; the other
    training rows are replayed); ``ratio``: replayed rows drawn per epoch per own training row."""

    own_tasks: tuple[str, ...]
    ratio: float

    def replayed_per_epoch(self, n_own: int, n_replayed: int) -> int:
        """Replayed rows an epoch draws: ``ratio`` x ``n_own``, at most ``n_replayed`` (at least one when there
        are any, so the kept heads train at every epoch)."""
        if n_replayed == 0:
            return 0
        return int(min(n_replayed, max(round(self.ratio * n_own), 1)))


class ReplayMixSampler(Sampler[int]):
    """Positions in the training dataset for one epoch: every one of ``own``, and ``n_replayed`` of ``replayed``
    drawn without replacement, shuffled together. The draw is seeded by ``seed`` and the epoch (Lightning calls
    :meth:`set_epoch`; a sampler it does not reach, e.g. wrapped for DDP, counts its own epochs), so a resumed run
    draws what it would have drawn."""

    def __init__(self, own: np.ndarray, replayed: np.ndarray, n_replayed: int, *, seed: int) -> None:
        self.own = np.asarray(own, dtype=np.int64)
        self.replayed = np.asarray(replayed, dtype=np.int64)
        self.n_replayed = int(min(n_replayed, len(self.replayed)))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.own) + self.n_replayed

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1  # the next epoch's draw when set_epoch is not called
        drawn = rng.choice(self.replayed, size=self.n_replayed, replace=False)
        return iter(rng.permutation(np.concatenate([self.own, drawn])).tolist())
