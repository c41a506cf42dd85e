"""A DataModule over a pretraining corpus (:mod:`fm_engine.foundation.corpus`): the same batches, splits
and views as :class:`~fm_engine.data.CompositionDataModule`, without parsing a formula or computing a
descriptor.

The descriptor rows and composition weights are the corpus's memory-mapped caches: a batch gathers its
rows from the map, so only the labels (one float32 / int64 column per task) are held in memory. The split
is the corpus's own ``split`` column (``data.val_ratio`` / ``test_ratio`` do not apply); a missing label
(NaN) is masked for its task, never imputed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fm_engine.data.datamodule import CompositionDataModule
from fm_engine.data.recipe import auto_recipe
from fm_engine.foundation.corpus import Corpus, CorpusError, load_corpus
from fm_engine.tasks import TaskSpec, TaskType


class CorpusDataModule(CompositionDataModule):
    """Serves the corpus at ``corpus`` (a folder, or a loaded :class:`Corpus`) for ``tasks`` (corpus task
    specs, e.g. from :meth:`Corpus.task_specs`; per-task model keys such as ``loss_weight`` may differ).
    The other options are :class:`CompositionDataModule`'s."""

    def __init__(self, corpus: str | Path | Corpus, tasks: Sequence[TaskSpec], **options: Any) -> None:
        super().__init__(tasks, **options)
        self.corpus_source = corpus

    def _prepare(self) -> None:
        corpus = self.corpus_source if isinstance(self.corpus_source, Corpus) else load_corpus(self.corpus_source)
        known = {task.name: task for task in corpus.tasks}
        unknown = [task.name for task in self.tasks if task.name not in known]
        if unknown:
            raise CorpusError(
                f"{corpus.path}: task(s) {', '.join(unknown)} not in the corpus (its tasks: {', '.join(known)})"
            )
        frame = corpus.frame
        self.corpus = corpus
        self.tables = {}
        self.predict_only_bad = pd.DataFrame(columns=["row", "input", "reason"])
        self.keys = frame["composition"].tolist()
        self.weights = corpus.weights_matrix()
        self.x = corpus.descriptor_matrix(self.descriptor.spec)
        self.n_dropped_descriptor = 0
        self.masks, self.values, self.curves = {}, {}, {}
        for task in self.tasks:
            column = frame[task.name].to_numpy(dtype=np.float64)
            mask = ~np.isnan(column)
            dtype = np.int64 if task.type is TaskType.CLASSIFICATION else np.float32
            self.masks[task.name] = mask
            self.values[task.name] = np.where(mask, column, 0).astype(dtype)
            if task.type is TaskType.CLASSIFICATION and task.classes is None:
                task.classes = list(known[task.name].classes or [])
        self.split = frame["split"].to_numpy(dtype=object)
        labelled = np.any(np.stack(list(self.masks.values()), axis=1), axis=1)
        self.split[~labelled] = "unlabelled"
        # the corpus keeps its own split; the recipe fills the batch size and schedule left to the data size
        self.recipe = auto_recipe(
            int(labelled.sum()), test_ratio=self.test_ratio, val_ratio=self.val_ratio, batch_size=self.batch_size
        )
        self.val_ratio, self.batch_size = self.recipe.val_ratio, self.recipe.batch_size
        self.train_keep = self._train_keep()
        self.predict_indices = self._predict_indices({})

    def _predict_indices(self, position: Mapping[str, int]) -> np.ndarray:
        """Every task's default predictions at once: the test compositions labelled for any task (a
        corpus task has no explicit predict list)."""
        if any(task.predict_idx is not None for task in self.tasks):
            return super()._predict_indices({key: i for i, key in enumerate(self.keys)})
        labelled = np.any(np.stack([self.masks[t.name] for t in self.tasks], axis=1), axis=1)
        has_test = bool(np.any(self.split == "test"))
        return np.flatnonzero(labelled & (self.split == "test") if has_test else labelled)
