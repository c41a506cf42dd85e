"""Composition-keyed task data: per-task tables, splits and the Lightning DataModule."""

from fm_engine.data.datamodule import CompositionDataModule, TaskBatch
from fm_engine.data.splits import MultiTaskSplitter, resolve_splits, subsample_keep_mask
from fm_engine.data.tables import TaskTable, load_task_table, read_table

__all__ = [
    "CompositionDataModule",
    "MultiTaskSplitter",
    "TaskBatch",
    "TaskTable",
    "load_task_table",
    "read_table",
    "resolve_splits",
    "subsample_keep_mask",
]
