"""The composition-keyed multi-task DataModule.

All tasks' tables are joined on the canonical composition key. A composition lacking a task's target is
masked for that task (never dropped, never imputed). Descriptors are computed once per unique composition.
Batches are ``TaskBatch(x, targets, masks, t)``:

* ``x``: (B, D) float32 descriptors;
* ``targets[task]``: regression (B,) or (B, d) float32 (0 where masked), classification (B,) int64
  (0 where masked), kernel regression: list of B tensors of variable length (empty where masked);
* ``masks[task]``: (B,) bool;
* ``t[task]``: kernel regression only: list of B tensors with the curve's ``t`` values.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from fm_engine.compositions import parse_many
from fm_engine.config import DEFAULT_SEED
from fm_engine.data.recipe import Recipe, auto_recipe
from fm_engine.data.replay_mix import ReplayMix, ReplayMixSampler
from fm_engine.data.settings import DataSection
from fm_engine.data.splits import overlay_split_labels, resolve_splits, subsample_keep_mask
from fm_engine.data.tables import TaskTable, load_task_table
from fm_engine.descriptors import Descriptor, DescriptorSpec, transform_in_blocks
from fm_engine.tasks import TaskSpec, TaskType, check_unique_names

STAGES = ("train", "val", "test")


class TaskBatch(NamedTuple):
    x: torch.Tensor
    targets: dict[str, torch.Tensor | list[torch.Tensor]]
    masks: dict[str, torch.Tensor]
    t: dict[str, list[torch.Tensor]]


class CompositionDataset(Dataset):
    """Rows ``indices`` of the joined table; fetches whole batches at once (``__getitems__``)."""

    def __init__(self, module: CompositionDataModule, indices: np.ndarray, keep: Mapping[str, np.ndarray]):
        self.module = module
        self.indices = np.asarray(indices, dtype=np.int64)
        self.keep = keep  # task -> (N,) bool over the joined table

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> TaskBatch:
        return self.__getitems__([item])

    def __getitems__(self, items: Sequence[int]) -> TaskBatch:
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        m = self.module
        x = torch.from_numpy(m.x[rows])
        targets: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        masks: dict[str, torch.Tensor] = {}
        t: dict[str, list[torch.Tensor]] = {}
        for task in m.tasks:
            name = task.name
            mask = self.keep[name][rows]
            masks[name] = torch.from_numpy(mask)
            if task.type is TaskType.KERNEL_REGRESSION:
                curves = m.curves[name]
                empty = torch.zeros(0, dtype=torch.float32)
                present = [curves[r] if ok else None for r, ok in zip(rows, mask, strict=True)]
                targets[name] = [torch.from_numpy(c[1]) if c else empty for c in present]
                t[name] = [torch.from_numpy(c[0]) if c else empty for c in present]
            else:
                values = m.values[name][rows]
                targets[name] = torch.from_numpy(np.where(_expand(mask, values), values, 0))
        return TaskBatch(x, targets, masks, t)


def _expand(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (values.ndim - 1))


def _collate_batch(batch: TaskBatch) -> TaskBatch:
    return batch


class CompositionDataModule(L.LightningDataModule):
    """Joins task tables on composition, computes descriptors, splits, and serves batches.

    Args:
        tasks: the task specs (each names its own data files).
        descriptor: descriptor (or its spec); default KMD-1d with 8 grids.
        base_dir: folder that relative ``data_files`` are resolved against.
        frames: optional in-memory tables by task name, replacing that task's ``data_files``.
        val_ratio, test_ratio: fractions of the compositions without a file split label; ``val_ratio`` None:
            chosen from the data size (see :attr:`recipe`).
        seed: seeds the shuffling of training batches, and (unless ``split_seed`` is given) the split and
            the ``task_masking_ratio`` subsampling.
        split_seed: seeds the split and the subsampling instead (default: ``seed``), so models with
            different seeds can share one split.
        batch_size: training/evaluation batch size; None: chosen from the data size.

    After ``setup()``, :attr:`recipe` holds the default recipe for this data's size
    (:func:`fm_engine.data.recipe.auto_recipe`; the settings given here kept), and ``val_ratio`` /
    ``batch_size`` hold the values used.
        drop_last_train: drop the last incomplete training batch (BatchNorm cannot take one sample).
        allow_pickle: read pickled ``data_files`` (``.pkl``, ``.pd.xz``, ...); only on the user's in-person
            opt-in (see :func:`fm_engine.data.tables.read_table`).
        replay_mix: a fine-tune's epoch (:mod:`fm_engine.data.replay_mix`): the training rows of its own tasks
            and a fresh draw of the other (replayed) rows at every epoch; the batch size and schedule then follow
            the rows an epoch trains on. None: every training row at every epoch.
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        *,
        descriptor: Descriptor | DescriptorSpec | None = None,
        base_dir: str | Path | None = None,
        frames: Mapping[str, pd.DataFrame] | None = None,
        val_ratio: float | None = DataSection.val_ratio,
        test_ratio: float = DataSection.test_ratio,
        seed: int = DEFAULT_SEED,
        split_seed: int | None = DataSection.split_seed,
        batch_size: int | None = DataSection.batch_size,
        num_workers: int = DataSection.num_workers,
        drop_last_train: bool = True,
        allow_pickle: bool = DataSection.allow_pickle,
        replay_mix: ReplayMix | None = None,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("at least one task is needed")
        self.tasks = list(tasks)
        check_unique_names(self.tasks)
        if descriptor is None or isinstance(descriptor, DescriptorSpec):
            descriptor = Descriptor(descriptor)
        self.descriptor = descriptor
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.frames = dict(frames or {})
        self.val_ratio = val_ratio
        self.test_ratio = test_ratio
        self.seed = seed
        self.split_seed = seed if split_seed is None else split_seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.drop_last_train = drop_last_train
        self.allow_pickle = allow_pickle
        self.replay_mix = replay_mix
        self._mix: ReplayMixSampler | None = None  # set up with the split when replay_mix draws a share
        self._prepared = False
        self._train_rows: np.ndarray | None = None
        self.recipe: Recipe | None = None

    # ------------------------------------------------------------------ preparation
    def setup(self, stage: str | None = None) -> None:
        if not self._prepared:
            self._prepare()
            self._prepared = True

    def _prepare(self) -> None:
        self.tables: dict[str, TaskTable] = {
            task.name: load_task_table(
                task, base_dir=self.base_dir, frame=self.frames.get(task.name), allow_pickle=self.allow_pickle
            )
            for task in self.tasks
        }
        # The composition universe: every task's keys (first-seen order) + explicit predict lists.
        weights_by_key: dict[str, np.ndarray] = {}
        for table in self.tables.values():
            for key, w in zip(table.keys, table.weights, strict=True):
                weights_by_key.setdefault(key, w)
        self.predict_only_bad = pd.DataFrame(columns=["row", "input", "reason"])
        for task in self.tasks:
            if isinstance(task.predict_idx, list):
                parsed = parse_many(task.predict_idx)
                for key, w in zip(parsed.keys, parsed.weights, strict=True):
                    weights_by_key.setdefault(key, w)
                self.predict_only_bad = pd.concat([self.predict_only_bad, parsed.bad], ignore_index=True)

        keys = list(weights_by_key)
        weights = np.stack([weights_by_key[k] for k in keys])
        del weights_by_key
        for table in self.tables.values():  # joined into ``weights``: the per-task copies are not needed again
            table.weights = table.weights[:0]
        x, finite = self._descriptors(weights)
        self.n_dropped_descriptor = int((~finite).sum())
        if self.n_dropped_descriptor:
            warnings.warn(
                f"dropped {self.n_dropped_descriptor} composition(s) without a valid descriptor", stacklevel=2
            )
        if self.n_dropped_descriptor:
            keys, weights, x = [k for k, ok in zip(keys, finite, strict=True) if ok], weights[finite], x[finite]
        self.keys, self.weights, self.x = keys, weights, x
        position = {key: i for i, key in enumerate(self.keys)}
        n = len(self.keys)

        self.masks: dict[str, np.ndarray] = {}
        self.values: dict[str, np.ndarray] = {}
        self.curves: dict[str, list[tuple[np.ndarray, np.ndarray] | None]] = {}
        for task in self.tasks:
            table = self.tables[task.name]
            rows = np.array([position.get(k, -1) for k in table.keys], dtype=np.int64)
            ok = rows >= 0
            mask = np.zeros(n, dtype=bool)
            mask[rows[ok]] = True
            self.masks[task.name] = mask
            if task.type is TaskType.KERNEL_REGRESSION:
                curves: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n
                for row, t_values, y_values in zip(rows, table.t, table.values, strict=True):  # type: ignore[arg-type]
                    if row >= 0:
                        curves[row] = (t_values.astype(np.float32), y_values.astype(np.float32))
                self.curves[task.name] = curves
            else:
                source = np.asarray(table.values)
                dtype = np.int64 if task.type is TaskType.CLASSIFICATION else np.float32
                values = np.zeros((n,) + source.shape[1:], dtype=dtype)
                values[rows[ok]] = source[ok]
                self.values[task.name] = values
            if task.type is TaskType.CLASSIFICATION and task.classes is None:
                task.classes = table.classes

        availability = np.stack([self.masks[t.name] for t in self.tasks], axis=1)
        file_labels = overlay_split_labels(
            [dict(zip(table.keys, table.split, strict=True)) for table in self.tables.values()]
        )
        labelled = availability.any(axis=1)
        # The validation share only splits compositions without a split label from a file, so their number sizes
        # it (a fine-tune's replayed corpus rows come with their split: a few hundred rows of the user's own get
        # the small-data share); batch size and epochs follow every labelled composition.
        unsplit = sum(1 for i in np.flatnonzero(labelled) if self.keys[i] not in file_labels)
        val_ratio = self.val_ratio
        if val_ratio is None and 0 < unsplit < int(labelled.sum()):
            val_ratio = auto_recipe(unsplit, test_ratio=self.test_ratio).val_ratio
        asked_batch = self.batch_size
        self.recipe = auto_recipe(
            int(labelled.sum()), test_ratio=self.test_ratio, val_ratio=val_ratio, batch_size=asked_batch
        )
        self.val_ratio, self.batch_size = self.recipe.val_ratio, self.recipe.batch_size
        self.split = np.full(n, "unlabelled", dtype=object)
        labelled_idx = np.flatnonzero(labelled)
        self.split[labelled_idx] = resolve_splits(
            [self.keys[i] for i in labelled_idx],
            availability[labelled_idx],
            file_labels,
            val_ratio=self.val_ratio,
            test_ratio=self.test_ratio,
            seed=self.split_seed,
        )
        self.train_keep = self._train_keep()
        self.predict_indices = self._predict_indices(position)
        if self.replay_mix is not None:
            self._mix = self._mix_sampler()
        if self._mix is not None:  # the schedule follows the rows an epoch trains on
            self.recipe = auto_recipe(
                int(labelled.sum()), test_ratio=self.test_ratio, val_ratio=self.val_ratio, batch_size=asked_batch,
                n_train=len(self._mix),
            )  # fmt: skip
            self.batch_size = self.recipe.batch_size

    def _mix_sampler(self) -> ReplayMixSampler | None:
        """The sampler of ``replay_mix`` over the training dataset's positions; None when an epoch would draw
        every replayed row anyway (or there is none), so the run trains as without a mix."""
        assert self.replay_mix is not None
        train = np.flatnonzero(self.split == "train")
        kept = np.stack([self.train_keep[t.name][train] for t in self.tasks], axis=1).any(axis=1)
        own_tasks = [t.name for t in self.tasks if t.name in self.replay_mix.own_tasks]
        unknown = sorted(set(self.replay_mix.own_tasks) - set(own_tasks))
        if unknown:
            raise ValueError(f"replay_mix: unknown task(s) {', '.join(unknown)}")
        own = np.stack([self.train_keep[name][train] for name in own_tasks], axis=1).any(axis=1)
        own_positions, replayed = np.flatnonzero(own), np.flatnonzero(kept & ~own)
        n_replayed = self.replay_mix.replayed_per_epoch(len(own_positions), len(replayed))
        if n_replayed >= len(replayed) or not len(own_positions):
            return None
        # positions in the training dataset (every training row; a row without a kept label trains nothing)
        return ReplayMixSampler(own_positions, replayed, n_replayed, seed=self.seed)

    def _train_keep(self) -> dict[str, np.ndarray]:
        """Per task, the training rows kept after its ``task_masking_ratio`` subsampling."""
        train = self.split == "train"
        return {
            task.name: subsample_keep_mask(
                self.masks[task.name] & train, task.task_masking_ratio, seed=self.split_seed, task=task.name
            )
            for task in self.tasks
        }

    def _descriptors(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float32 descriptor rows (the dtype batches use) and which rows are finite (block by block: see
        :func:`fm_engine.descriptors.transform_in_blocks`)."""
        return transform_in_blocks(self.descriptor, weights)

    def _predict_indices(self, position: Mapping[str, int]) -> np.ndarray:
        chosen: list[int] = []
        seen: set[int] = set()
        has_test = bool(np.any(self.split == "test"))
        for task in self.tasks:
            idx = task.predict_idx
            if isinstance(idx, list):
                rows = [position[k] for k in parse_many(idx).keys if k in position]
            else:
                stage = idx or ("test" if has_test else "all")
                selected = self.masks[task.name] if stage == "all" else self.masks[task.name] & (self.split == stage)
                rows = list(np.flatnonzero(selected))
            for row in rows:
                if row not in seen:
                    seen.add(row)
                    chosen.append(int(row))
        return np.asarray(chosen, dtype=np.int64)

    def restrict_training(self, keep: Mapping[str, np.ndarray]) -> None:
        """Train only on the rows ``keep[task]`` (a task not named gets none). The training set becomes
        the training compositions with at least one kept label (e.g. a continual-rehearsal step: the new
        task's rows plus a small replay of earlier tasks')."""
        self.setup()
        unknown = sorted(set(keep) - {t.name for t in self.tasks})
        if unknown:
            raise ValueError(f"unknown task(s): {', '.join(unknown)}")
        train = self.split == "train"
        self.train_keep = {
            task.name: np.asarray(keep[task.name], dtype=bool) & train
            if task.name in keep
            else np.zeros(len(self.keys), dtype=bool)
            for task in self.tasks
        }
        self._train_rows = np.flatnonzero(np.any(np.stack(list(self.train_keep.values())), axis=0))

    # ------------------------------------------------------------------ views
    def stage_indices(self, stage: str) -> np.ndarray:
        """Row indices of the joined table in a split stage (train / val / test)."""
        self.setup()
        return np.flatnonzero(self.split == stage)

    @property
    def predict_compositions(self) -> list[str]:
        self.setup()
        return [self.keys[i] for i in self.predict_indices]

    def summary(self) -> pd.DataFrame:
        """Per task: labelled compositions per split (after masking) and skipped rows."""
        self.setup()
        rows = []
        stage = {name: self.split == name for name in STAGES}
        for task in self.tasks:
            mask = self.masks[task.name]
            rows.append(
                {
                    "task": task.name,
                    "type": task.type.value,
                    "unit": task.unit,
                    "train": int((mask & stage["train"]).sum()),
                    "train_kept": int(self.train_keep[task.name].sum()),
                    "val": int((mask & stage["val"]).sum()),
                    "test": int((mask & stage["test"]).sum()),
                    "bad_rows": len(self.tables[task.name].bad_rows) if task.name in self.tables else 0,
                }
            )
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ loaders
    def dataset(self, stage: str) -> CompositionDataset:
        self.setup()
        if stage == "predict":
            return CompositionDataset(self, self.predict_indices, self.masks)
        if stage not in STAGES:
            raise ValueError(f"unknown stage '{stage}'")
        if stage == "train":
            rows = self._train_rows if self._train_rows is not None else self.stage_indices("train")
            return CompositionDataset(self, rows, self.train_keep)
        return CompositionDataset(self, self.stage_indices(stage), self.masks)

    def _loader(self, stage: str, *, shuffle: bool, drop_last: bool) -> DataLoader:
        dataset = self.dataset(stage)
        mix = self._mix if stage == "train" and self._train_rows is None else None
        if mix is not None:  # its own shuffled draw per epoch
            return DataLoader(
                dataset, batch_size=self.batch_size, sampler=mix, drop_last=drop_last and len(mix) > self.batch_size,
                collate_fn=_collate_batch, num_workers=self.num_workers,
            )  # fmt: skip
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last and len(dataset) > self.batch_size,
            collate_fn=_collate_batch,
            num_workers=self.num_workers,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, drop_last=self.drop_last_train)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False, drop_last=False)
