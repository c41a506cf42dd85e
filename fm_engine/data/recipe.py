"""The default training recipe by data size: validation share, batch size, epochs and patience.

A setting left unset (None) in a training config (``data.val_ratio``, ``data.batch_size``,
``trainer.max_epochs``, ``trainer.patience``) takes the value :func:`auto_recipe` gives for the number of
compositions with at least one label; the run records the resolved values (its ``config.yaml`` and model card).

Why: with a fixed batch of 256 and 100 epochs, a few hundred rows make one optimizer step per epoch (100 steps
in all) and early stopping on a 30-row validation set; the network stops long before it has learned anything.
The recipe aims at a number of optimizer steps (:data:`TARGET_STEPS`) with a few steps per epoch, a patience
that grows with the epochs and a larger validation share for small data; from about 3,000 compositions on it
gives the fixed settings of earlier versions (batch 256, 100 epochs, patience 10, validation 0.1). Measured on
300-row subsets of the bulk modulus (bench/small_data.py): batches of 16-32 (many small steps) overfit (test MAE
18.9 GPa against 16.3 with batches of 64), and a validation share of 0.1 gave 18.2 against 16.3 with 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VAL_RATIO = 0.1  # validation share from LARGE_DATA labelled compositions on
LARGE_DATA = 3000  # compositions; below, the validation share grows to SMALL_VAL_RATIO
SMALL_DATA = 500
SMALL_VAL_RATIO = 0.2
MIN_BATCH, MAX_BATCH = 32, 256  # compositions per optimizer step
BATCHES_PER_EPOCH = 4  # the batch size aims at about this many steps per epoch (a power of two, clipped)
TARGET_STEPS = 1000  # optimizer steps the epoch budget aims at
MIN_EPOCHS, MAX_EPOCHS = 100, 500
PATIENCE_SHARE = 0.1  # patience = this share of the epochs, at least MIN_PATIENCE
MIN_PATIENCE = 10


@dataclass(frozen=True)
class Recipe:
    """Resolved settings: ``val_ratio`` (share of the compositions), ``batch_size`` (compositions per step),
    ``max_epochs`` and ``patience`` (epochs)."""

    val_ratio: float
    batch_size: int
    max_epochs: int
    patience: int


def auto_recipe(
    n_compositions: int,
    *,
    test_ratio: float,
    val_ratio: float | None = None,
    batch_size: int | None = None,
    n_train: int | None = None,
) -> Recipe:
    """The recipe for ``n_compositions`` labelled compositions of which ``test_ratio`` are held out for testing;
    ``val_ratio`` / ``batch_size`` given (set by the user) are kept, and the other settings follow from them.
    ``n_train``: the rows an epoch trains on, when known (a fine-tune's own rows and the replay drawn per epoch,
    see :mod:`fm_engine.data.replay_mix`); default ``n_compositions x (1 - val_ratio - test_ratio)``.

    * validation share: 0.2 up to 500 compositions, falling linearly (in log n) to 0.1 at 3,000 and beyond;
    * batch size: the power of two nearest ``n_train / 4``, within [32, 256];
    * epochs: enough for about 1,000 optimizer steps, within [100, 500];
    * patience: a tenth of the epochs, at least 10.

    For 300 compositions (test share 0.1): val 0.2, batch 64, 334 epochs, patience 33; from about 3,000 on, the
    fixed defaults of earlier versions: val 0.1, batch 256, 100 epochs, patience 10.
    """
    n = max(int(n_compositions), 1)
    if val_ratio is None:
        if n <= SMALL_DATA:
            val_ratio = SMALL_VAL_RATIO
        elif n >= LARGE_DATA:
            val_ratio = VAL_RATIO
        else:
            share = math.log(n / SMALL_DATA) / math.log(LARGE_DATA / SMALL_DATA)
            val_ratio = round(SMALL_VAL_RATIO + share * (VAL_RATIO - SMALL_VAL_RATIO), 2)
        val_ratio = min(val_ratio, max(0.0, 0.95 - test_ratio))  # never leave nothing to train on
    rows = max(n * (1.0 - val_ratio - test_ratio) if n_train is None else float(n_train), 1.0)
    if batch_size is None:
        batch = 2 ** round(math.log2(max(rows / BATCHES_PER_EPOCH, 1.0)))
        batch_size = int(min(max(batch, MIN_BATCH), MAX_BATCH))
    batch = batch_size
    steps_per_epoch = max(int(rows // batch), 1)
    epochs = int(min(max(math.ceil(TARGET_STEPS / steps_per_epoch), MIN_EPOCHS), MAX_EPOCHS))
    patience = max(MIN_PATIENCE, round(PATIENCE_SHARE * epochs))
    return Recipe(val_ratio=float(val_ratio), batch_size=int(batch), max_epochs=epochs, patience=patience)
