"""Task specifications: what a task predicts, in which unit, from which data files.

A task dict (or YAML block) drives both the data layer and, later, the model heads::

    TaskSpec.from_dict({"name": "band_gap", "type": "regression",
                        "data_files": ["my_gaps.csv"], "composition_column": "formula",
                        "data_column": "gap", "unit": "eV"})
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from fm_engine.config import check_keys, check_value
from fm_engine.floors import check_lower_bound
from fm_engine.thresholds import AUTO, HALF

REGRESSION_LOSSES = ("l1", "huber", "mse")  # see TaskSpec.loss


class TaskType(StrEnum):
    REGRESSION = "regression"
    CLASSIFICATION = "classification"
    KERNEL_REGRESSION = "kernel_regression"

    @classmethod
    def parse(cls, value: str | TaskType) -> TaskType:
        text = str(value).strip().lower().replace("-", "_").replace(" ", "_")
        aliases = {"kernelregression": "kernel_regression", "sequence": "kernel_regression"}
        text = aliases.get(text, text)
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown task type '{value}' (choose from {choices})") from None


PredictIdx = str | list[str] | None


@dataclass
class TaskSpec:
    """One task: its type, data source and unit.

    Attributes:
        name: unique task name (used as the output column name).
        type: regression, classification or kernel_regression (property vs ``t`` curves).
        data_files: the task's own file(s) (csv / parquet; pickled .pkl / .pd.xz only with the user's
            in-person opt-in, see :func:`fm_engine.data.tables.read_table`), concatenated by rows. Relative
            paths are resolved against the config file's folder; in a config recorded in a checkpoint or run
            folder, against its recorded ``base_dir`` or else that folder (never the working directory).
        data_column: column holding the target (a number, a list of numbers for vector/curve targets,
            or a class label).
        composition_column: column holding the formula (default ``composition``).
        t_column: kernel regression only: column with the sequence axis (e.g. temperature).
        split_column: optional in-file ``train``/``val``/``test`` labels (default ``split``; ignored if
            absent from the file).
        unit: physical unit of the target (e.g. ``GPa``); ``t_unit`` likewise for ``t``.
        classes: classification only: class names; file labels may be these names or 0-based indices.
            Inferred (sorted unique labels) when not given.
        task_masking_ratio: keep-ratio in [0, 1] applied to this task's labelled *training* rows.
        predict_idx: which compositions to predict: ``None`` (test split, or all if no test),
            ``"train"``, ``"val"``, ``"test"``, ``"all"`` or an explicit list of formulas.
        description: free text shown to users.
        loss_weight: static weight of this task's loss in the total loss.
        head_hidden_dims: hidden layer sizes of the task's head (an MLP on the shared latent).
        class_weights: classification only: per-class loss weights, or ``"balanced"`` (inverse class
            frequency on the training split).
        n_kernels: kernel regression only: number of Gaussian kernels in ``t``.
        loss: regression only: ``l1`` (default: the mean absolute error itself, the metric every card and
            benchmark reports; chosen on matbench_expt_gap validation rows, see README), ``huber`` (quadratic
            within half a standard deviation, linear beyond) or ``mse``.
        decision_threshold: binary classification only: the probability of the second class (``classes[1]``)
            above which a composition is predicted as that class. ``"auto"`` (default): chosen at the end of
            training on the validation split, for the highest balanced accuracy (ties: closest to 0.5), and
            stored in the checkpoint (no validation rows of both classes: 0.5, the most probable class); a
            number in (0, 1) fixes it (0.5: the most probable class, as before thresholds existed; also accepted
            for tasks with more classes, which always predict their most probable class). Only the predicted
            class follows it; the class probabilities do not change. See :mod:`fm_engine.thresholds`.
        lower_bound: regression and sequence tasks: the value (in the task's unit) below which no prediction
            is reported. ``"auto"`` (default): the training targets' minimum when at least 5 % of them sit
            exactly at it (0 eV for band gaps, where every metal sits), else none; ``"none"``; or a number (e.g.
            0 for a modulus). See :mod:`fm_engine.floors`.
    """

    name: str
    type: TaskType = TaskType.REGRESSION
    data_files: list[str] = field(default_factory=list)
    data_column: str | None = None
    composition_column: str = "composition"
    t_column: str | None = None
    split_column: str = "split"
    unit: str = ""
    t_unit: str = ""
    classes: list[str] | None = None
    task_masking_ratio: float = 1.0
    predict_idx: PredictIdx = None
    description: str = ""
    loss_weight: float = 1.0
    head_hidden_dims: list[int] = field(default_factory=lambda: [64])
    class_weights: list[float] | str | None = None
    n_kernels: int = 8
    loss: str = "l1"
    decision_threshold: float | str = AUTO
    lower_bound: float | str = AUTO

    def __post_init__(self) -> None:
        if not self.name or not str(self.name).strip():
            raise ValueError("a task needs a non-empty name")
        self.type = TaskType.parse(self.type)
        if isinstance(self.data_files, str | Path):
            self.data_files = [str(self.data_files)]
        self.data_files = [str(path) for path in self.data_files]
        if self.data_column is None:
            self.data_column = self.name
        if not 0.0 <= float(self.task_masking_ratio) <= 1.0:
            raise ValueError(f"task '{self.name}': task_masking_ratio must be in [0, 1]")
        if self.type is TaskType.KERNEL_REGRESSION and not self.t_column:
            raise ValueError(f"task '{self.name}': a kernel_regression task needs a t_column")
        if self.type is not TaskType.KERNEL_REGRESSION and self.t_column:
            raise ValueError(f"task '{self.name}': t_column is only for kernel_regression tasks")
        if self.type is not TaskType.CLASSIFICATION and self.classes:
            raise ValueError(f"task '{self.name}': classes are only for classification tasks")
        if self.classes is not None:
            self.classes = [str(c) for c in self.classes]
            if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
                raise ValueError(f"task '{self.name}': classes must be >= 2 distinct names")
        weight = self.loss_weight
        if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"task '{self.name}': loss_weight: expected a number >= 0, got {weight!r}")
        self.head_hidden_dims = [int(d) for d in self.head_hidden_dims]
        if not self.head_hidden_dims or min(self.head_hidden_dims) < 1:
            raise ValueError(
                f"task '{self.name}': head_hidden_dims: expected a list of layer sizes >= 1, "
                f"got {self.head_hidden_dims}"
            )
        if self.class_weights is not None:
            if self.type is not TaskType.CLASSIFICATION:
                raise ValueError(f"task '{self.name}': class_weights are only for classification tasks")
            if isinstance(self.class_weights, str) and self.class_weights != "balanced":
                raise ValueError(f"task '{self.name}': class_weights must be 'balanced' or a list of numbers")
            if isinstance(self.class_weights, list | tuple):
                self.class_weights = [float(w) for w in self.class_weights]
                if not all(math.isfinite(w) and w >= 0 for w in self.class_weights) or not any(self.class_weights):
                    raise ValueError(
                        f"task '{self.name}': class_weights: expected finite numbers >= 0 (not all 0), "
                        f"got {self.class_weights}"
                    )
                if self.classes is not None and len(self.class_weights) != len(self.classes):
                    raise ValueError(
                        f"task '{self.name}': {len(self.class_weights)} class_weights for {len(self.classes)} classes"
                    )
        if self.loss not in REGRESSION_LOSSES:
            raise ValueError(f"task '{self.name}': loss must be one of {', '.join(REGRESSION_LOSSES)}, not "
                             f"'{self.loss}'")  # fmt: skip
        if self.n_kernels < 1:
            raise ValueError(f"task '{self.name}': n_kernels must be >= 1")
        self.check_decision_threshold()
        self.lower_bound = check_lower_bound(self.lower_bound, task=self.name)
        if self.type is TaskType.CLASSIFICATION and self.lower_bound != AUTO:
            raise ValueError(f"task '{self.name}': lower_bound is only for regression and kernel_regression tasks")
        if isinstance(self.predict_idx, str) and self.predict_idx not in ("train", "val", "test", "all"):
            raise ValueError(f"task '{self.name}': predict_idx must be train, val, test, all or a list of formulas")

    def check_decision_threshold(self) -> None:
        """``ValueError`` unless ``decision_threshold`` is ``"auto"`` or a probability in (0, 1) of a
        classification task with two classes (when its classes are known; 0.5 for any number of classes)."""
        value = self.decision_threshold
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value != AUTO and not (number and 0.0 < value < 1.0):
            raise ValueError(
                f"task '{self.name}': decision_threshold: expected 'auto' or a probability in (0, 1), got {value!r}"
            )
        if not number:
            return
        self.decision_threshold = float(value)
        if self.type is not TaskType.CLASSIFICATION:
            raise ValueError(f"task '{self.name}': decision_threshold is only for (binary) classification tasks")
        if self.classes is not None and len(self.classes) != 2 and value != HALF:
            raise ValueError(
                f"task '{self.name}': decision_threshold {value:g} needs two classes, the task has "
                f"{len(self.classes)} ({', '.join(self.classes)}); leave it 'auto' (the most probable class)"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str = "") -> TaskSpec:
        """Build from a task mapping; unknown keys and values of the wrong type raise a ``ValueError`` naming
        the key (under ``path``, e.g. ``tasks[2]``)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{path or 'task'}: expected a mapping of task settings, got {data!r}")
        check_keys(data, (f.name for f in fields(cls)), label=f"task '{data.get('name', '?')}'")
        if "name" not in data:
            raise ValueError(f"{path or 'task'}: missing key 'name' (every task needs a name)")
        return cls(**check_task_values(data, path=path or f"task '{data['name']}'"))


def check_task_values(data: Mapping[str, Any], *, path: str) -> dict[str, Any]:
    """The task settings in ``data`` checked against :class:`TaskSpec`'s field types (keys named under
    ``path``)."""
    hints = typing.get_type_hints(TaskSpec)
    data = dict(data)
    if isinstance(data.get("data_files"), str):  # one file may be given without a list
        data["data_files"] = [data["data_files"]]
    if isinstance(data.get("classes"), list):  # class names may be written as numbers
        data["classes"] = [str(c) if isinstance(c, int) and not isinstance(c, bool) else c for c in data["classes"]]
    return {key: check_value(value, hints[key], f"{path}.{key}") for key, value in data.items() if key in hints}


def check_unique_names(tasks: Sequence[TaskSpec]) -> None:
    names = [task.name for task in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate task name(s): {', '.join(duplicates)}")
