"""The ``data`` section of a training config: split fractions, batch size, loader workers, split seed.

It lives with the data layer so that :class:`~fm_engine.data.CompositionDataModule` takes its defaults from it;
:mod:`fm_engine.training.config` re-exports it as a section of ``TrainConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fm_engine.config import check_range, check_seed


@dataclass
class DataSection:
    """``val_ratio`` / ``test_ratio``: fractions in [0, 1) of the compositions without a file split label
    (their sum < 1); ``batch_size``: compositions per training step; ``num_workers``: DataLoader workers.
    ``val_ratio`` and ``batch_size`` None: chosen from the data size (:func:`fm_engine.data.recipe.auto_recipe`)."""

    val_ratio: float | None = None
    test_ratio: float = 0.1
    batch_size: int | None = None
    num_workers: int = 0
    # Seeds the train / val / test split and task subsampling; None: the run's ``seed``. Set it to keep
    # one split while ``seed`` varies the initial weights and batch order (seed studies, ensembles).
    split_seed: int | None = None
    # Read pickled data_files (.pkl, .pd.xz, ...), which can run code: only honoured from a config the user
    # runs directly (or --allow-pickle); dropped whenever a config is rebuilt from a checkpoint or run folder.
    allow_pickle: bool = False
    # A pretraining corpus folder (fm_engine.foundation.corpus; relative: to the config's folder): train on
    # its tasks (every one when ``tasks`` is empty) with its own split (val_ratio / test_ratio do not apply).
    corpus: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.allow_pickle, bool):
            raise ValueError(f"data.allow_pickle must be true or false, not {self.allow_pickle!r}")
        check_range("data.val_ratio", self.val_ratio, low=0, high=1, high_open=True)
        check_range("data.test_ratio", self.test_ratio, low=0, high=1, high_open=True)
        if self.val_ratio is not None and self.val_ratio + self.test_ratio >= 1:
            raise ValueError(
                f"data.val_ratio + data.test_ratio: expected < 1 (some compositions must be left to train on), "
                f"got {self.val_ratio} + {self.test_ratio}"
            )
        check_range("data.batch_size", self.batch_size, low=1)
        check_range("data.num_workers", self.num_workers, low=0)
        check_seed("data.split_seed", self.split_seed)
