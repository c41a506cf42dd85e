"""The model card: what a checkpoint's ``card.json`` holds, built, written, read and rendered (``card.md``) here.

A card describes a trained model for people: its tasks with units and test metrics (in the tasks' physical
units, with 95 % bootstrap intervals), the data, the split, how training went and the package versions.
:meth:`ModelCard.from_mapping` reads every card written so far (missing optional keys take their defaults,
unknown keys are ignored); a card whose keys hold the wrong kind of value raises :class:`CheckpointError`
naming the key. :meth:`ModelCard.to_mapping` gives the ``card.json`` content (same keys, same order, as
written since format version 1) and :meth:`ModelCard.render_markdown` the ``card.md`` text.

This module imports neither torch nor Lightning at import time: the engine, the inverse design and the
workbench read cards without loading the training stack.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fm_engine import __version__
from fm_engine.calibration import TaskCalibration, calibration_markdown

if TYPE_CHECKING:
    from fm_engine.data import CompositionDataModule
    from fm_engine.models import FlexibleMultiTaskModel
    from fm_engine.tasks import TaskSpec
    from fm_engine.thresholds import ThresholdChoice
    from fm_engine.training.config import TrainConfig
    from fm_engine.training.evaluate import StageEvaluation

CARD_FILE = "card.json"
CARD_MARKDOWN_FILE = "card.md"
STAGES = ("train", "val", "test")
METRIC_LABELS = {"mae": "MAE", "rmse": "RMSE", "r2": "R2", "accuracy": "accuracy",
                 "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1", "roc_auc": "ROC-AUC",
                 "error": "error rate"}  # fmt: skip
"""How tables and cards name each metric key."""


class CheckpointError(ValueError):
    """A checkpoint (or its model card) that is missing, corrupt, truncated or not ours."""


def format_interval(interval: Sequence[float]) -> str:
    """``[9.13, 10.9]``: a 95 % interval as the cards and tables show it."""
    return f"[{interval[0]:.4g}, {interval[1]:.4g}]"


def format_metric(value: float | None, interval: Sequence[float] | None = None) -> str:
    """``9.967``, or ``9.967 [9.13, 10.9]`` with its 95 % interval; ``n/a`` when undefined."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}" + (f" {format_interval(interval)}" if interval is not None else "")


def format_value(value: Any) -> str:
    """A card value as ``card.md`` shows it: whole numbers whole, other floats to 4 significant digits, ``n/a``
    for None / NaN / inf."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # counts stored as floats (e.g. a metric's n = 16920.0) stay whole numbers
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ------------------------------------------------------------------------------------------ reading mappings
_KINDS: dict[type, str] = {str: "text", int: "an integer", float: "a number", bool: "true or false",
                           dict: "a mapping", list: "a list"}  # fmt: skip


def _take(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    """``data[key]`` checked to be of ``kind`` (None or missing gives ``default``); ints count as floats."""
    value = data.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        expected = " or ".join(_KINDS.get(k, k.__name__) for k in kinds)
        raise CheckpointError(f"{CARD_FILE} key {where}{key}: expected {expected}, got {value!r}")
    return value


def _items(data: Mapping[str, Any], key: str, kind: type, where: str) -> list[Any]:
    """A list of values of one ``kind`` (ints count as floats); missing: []."""
    values = _take(data, key, list, where, [])
    for index, value in enumerate(values):
        item = f"{key}[{index}]"
        if _take({item: value}, item, kind, where) is None:
            raise CheckpointError(
                f"{CARD_FILE} key {where}{item}: expected {_KINDS.get(kind, kind.__name__)}, got null"
            )
    return list(values)


def _numbers(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    """A mapping of names to numbers (or to [low, high] pairs), as the metrics sections hold them."""
    values = _take(data, key, dict, where, {})
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in items):
            raise CheckpointError(f"{CARD_FILE} key {where}{key}.{name}: expected numbers, got {value!r}")
    return dict(values)


# ---------------------------------------------------------------------------------------------- the card
@dataclass
class TaskCard:
    """One task of a model card: what it predicts, the data it saw and its metrics (physical units)."""

    name: str
    type: str  # regression / classification / kernel_regression
    unit: str = ""
    t_unit: str = ""  # sequence tasks: the unit of t
    classes: list[str] | None = None  # classification: the class labels
    description: str = ""
    compositions: dict[str, int] = field(default_factory=dict)  # per split, and train_kept
    bad_rows_skipped: int = 0
    test_metrics: dict[str, float] = field(default_factory=dict)  # metric -> value; ``n``: test rows/points
    test_metrics_ci95: dict[str, list[float]] = field(default_factory=dict)  # metric -> [low, high]
    val_metrics: dict[str, float] = field(default_factory=dict)
    test_distance_to_training: dict[str, float] | None = None  # median / max fraction of atoms that differ
    # binary classification: the decision threshold on the probability of classes[1] (None: the most probable
    # class) and how it was set: "validation" (chosen there), "fixed" (the task's decision_threshold setting) or
    # "none" (no validation rows of both classes); "" for other tasks and cards written before thresholds existed
    decision_threshold: float | None = None
    decision_threshold_rule: str = ""
    # "validation" only: the validation rows it was chosen on and their balanced accuracy there, and at 0.5
    decision_threshold_validation: dict[str, float] = field(default_factory=dict)
    # regression / sequence tasks: no prediction below this (the task's unit; None: no bound), and for an
    # automatic bound the share of training targets at it (see fm_engine.floors)
    lower_bound: float | None = None
    lower_bound_share: float | None = None

    @property
    def unit_or_classes(self) -> str:
        """The task's unit, or its class names (comma-separated) for a classification task."""
        return self.unit or (", ".join(self.classes) if self.classes else "")

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> TaskCard:
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{CARD_FILE} key {where.rstrip('.')}: expected a mapping, got {data!r}")
        classes = _take(data, "classes", list, where)
        return cls(
            name=_take(data, "name", str, where) or _missing(where + "name"),
            type=_take(data, "type", str, where) or _missing(where + "type"),
            unit=_take(data, "unit", str, where, ""),
            t_unit=_take(data, "t_unit", str, where, ""),
            classes=[str(c) for c in classes] if classes is not None else None,
            description=_take(data, "description", str, where, ""),
            compositions=_numbers(data, "compositions", where),
            bad_rows_skipped=_take(data, "bad_rows_skipped", int, where, 0),
            test_metrics=_numbers(data, "test_metrics", where),
            test_metrics_ci95=_numbers(data, "test_metrics_ci95", where),
            val_metrics=_numbers(data, "val_metrics", where),
            test_distance_to_training=_numbers(data, "test_distance_to_training", where) or None,
            decision_threshold=_take(data, "decision_threshold", float, where),
            decision_threshold_rule=_take(data, "decision_threshold_rule", str, where, ""),
            decision_threshold_validation=_numbers(data, "decision_threshold_validation", where),
            lower_bound=_take(data, "lower_bound", float, where),
            lower_bound_share=_take(data, "lower_bound_share", float, where),
        )

    def to_mapping(self) -> dict[str, Any]:
        threshold = {
            "decision_threshold": self.decision_threshold,
            "decision_threshold_rule": self.decision_threshold_rule,
            "decision_threshold_validation": self.decision_threshold_validation,
        }
        return {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "t_unit": self.t_unit,
            "classes": self.classes,
            "description": self.description,
            "compositions": self.compositions,
            "bad_rows_skipped": self.bad_rows_skipped,
            "test_metrics": self.test_metrics,
            "test_metrics_ci95": self.test_metrics_ci95,
            "val_metrics": self.val_metrics,
            "test_distance_to_training": self.test_distance_to_training,
        } | (threshold if self.decision_threshold_rule else {}) | (
            {"lower_bound": self.lower_bound, "lower_bound_share": self.lower_bound_share}
            if self.lower_bound is not None else {}
        )  # fmt: skip

    def lower_bound_text(self) -> str:
        """The task's lower bound in a sentence for people; "" without one."""
        if self.lower_bound is None:
            return ""
        text = f"{self.name}: never predicted below {format_value(self.lower_bound)} {self.unit}".rstrip()
        if self.lower_bound_share is None:
            return f"{text} (fixed by the task's lower_bound setting)."
        return (f"{text}, the floor where {100 * self.lower_bound_share:.0f} % of the training targets sit "
                "(lower_bound: auto).")  # fmt: skip

    def decision_text(self) -> str:
        """How a binary task's predicted class is chosen, in a sentence for people; "" for other tasks."""
        if not self.decision_threshold_rule:
            return ""
        if self.decision_threshold is None:
            return (f"{self.name}: the most probable class (no threshold chosen: the validation split has no rows "
                    "of both classes).")  # fmt: skip
        positive = (self.classes or ["", "class 1"])[1]
        text = f"{self.name}: '{positive}' when its probability exceeds {self.decision_threshold:.4g}"
        figures = self.decision_threshold_validation
        if self.decision_threshold_rule == "validation":
            return (f"{text}, chosen on {format_value(figures.get('n'))} validation compositions for the highest "
                    f"balanced accuracy ({format_metric(figures.get('balanced_accuracy'))} there, "
                    f"{format_metric(figures.get('balanced_accuracy_at_half'))} at 0.5; ties go to the threshold "
                    "closest to 0.5).")  # fmt: skip
        return f"{text} (fixed by the task's decision_threshold setting)."


def _missing(key: str) -> Any:
    raise CheckpointError(f"{CARD_FILE} key {key} is missing")


@dataclass
class TrainingRecord:
    """How training went. Times in seconds; ``best_val_loss`` is the normalised multi-task loss."""

    epochs_run: int | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    wall_time_s: float | None = None  # every segment of a resumed run together
    segments: int | None = None  # 1 + the number of resumes
    mean_epoch_s: float | None = None
    samples_per_s: float | None = None
    devices: int | str | None = None
    strategy: str | None = None
    torch_threads: int | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "training.") -> TrainingRecord:
        return cls(
            epochs_run=_take(data, "epochs_run", int, where),
            best_epoch=_take(data, "best_epoch", int, where),
            best_val_loss=_take(data, "best_val_loss", float, where),
            wall_time_s=_take(data, "wall_time_s", float, where),
            segments=_take(data, "segments", int, where),
            mean_epoch_s=_take(data, "mean_epoch_s", float, where),
            samples_per_s=_take(data, "samples_per_s", float, where),
            devices=_take(data, "devices", (int, str, list), where),
            strategy=_take(data, "strategy", str, where),
            torch_threads=_take(data, "torch_threads", int, where),
        )

    def to_mapping(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FinetuneRecord:
    """A fine-tuned model's retrained heads and its test metrics before and after (physical units)."""

    source_checkpoint_id: str
    trained_heads: list[str]
    frozen: str
    test_metrics_before: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value
    test_metrics_after: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "finetune.") -> FinetuneRecord:
        return cls(
            source_checkpoint_id=_take(data, "source_checkpoint_id", str, where, ""),
            trained_heads=[str(t) for t in _take(data, "trained_heads", list, where, [])],
            frozen=_take(data, "frozen", str, where, ""),
            test_metrics_before={t: dict(m) for t, m in _take(data, "test_metrics_before", dict, where, {}).items()},
            test_metrics_after={t: dict(m) for t, m in _take(data, "test_metrics_after", dict, where, {}).items()},
        )

    def to_mapping(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _task_calibration(data: Mapping[str, Any], where: str) -> TaskCalibration:
    """A task's calibration record (numbers; null: not measured)."""
    fields = TaskCalibration.__dataclass_fields__.items()
    values = {name: _items(data, name, float, where) if spec.type.startswith("list")
              else _take(data, name, int if spec.type == "int" else float, where) for name, spec in fields}  # fmt: skip
    return TaskCalibration(**{name: value for name, value in values.items() if value is not None})


@dataclass
class EnsembleRecord:
    """An ensemble checkpoint's members (see ``fm train --ensemble``). The card's test and validation metrics are
    the ensemble mean's (regression and curves: the members' mean in the task's unit; classification: the mean
    class probabilities, with a decision threshold chosen on them); ``member_test_metrics`` holds each member's
    own test metrics (with its own threshold) and ``mean_member_test_metrics`` their mean over the members: the
    average member, to set beside the ensemble. Times in seconds."""

    members: int
    seeds: list[int] = field(default_factory=list)  # each member's training seed (one split for all)
    member_checkpoint_ids: list[str] = field(default_factory=list)  # the members' own run checkpoints
    member_epochs: list[int] = field(default_factory=list)
    member_seconds: list[float] = field(default_factory=list)  # each member's training wall time
    member_test_metrics: list[dict[str, dict[str, float]]] = field(default_factory=list)  # member -> task -> metric
    mean_member_test_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> mean
    # task -> its spread's calibration (fm_engine.calibration); empty: saved before calibration existed (factor 1)
    calibration: dict[str, TaskCalibration] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "ensemble.") -> EnsembleRecord:
        members = _take(data, "members", int, where)
        if members is None:
            _missing(f"{where}members")
        per_member = _take(data, "member_test_metrics", list, where, [])
        if not all(isinstance(entry, dict) for entry in per_member):
            raise CheckpointError(f"{CARD_FILE} key {where}member_test_metrics: expected one mapping per member")
        return cls(
            members=members,
            seeds=_items(data, "seeds", int, where),
            member_checkpoint_ids=_items(data, "member_checkpoint_ids", str, where),
            member_epochs=_items(data, "member_epochs", int, where),
            member_seconds=[float(s) for s in _items(data, "member_seconds", float, where)],
            member_test_metrics=[{t: dict(m) for t, m in entry.items()} for entry in per_member],
            mean_member_test_metrics={
                t: dict(m) for t, m in _take(data, "mean_member_test_metrics", dict, where, {}).items()
            },
            calibration={
                str(t): _task_calibration(_take({t: c}, t, dict, f"{where}calibration."), f"{where}calibration.{t}.")
                for t, c in _take(data, "calibration", dict, where, {}).items()
            },
        )

    def to_mapping(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if self.calibration:
            data["calibration"] = {task: c.to_mapping() for task, c in self.calibration.items()}
        else:
            del data["calibration"]
        return data

    def markdown(
        self, ensemble: Mapping[str, Mapping[str, float]], units: Mapping[str, str] | None = None
    ) -> list[str]:
        """The card's ensemble section: what it is, and per task and metric the ensemble's test metric
        (``ensemble``: task -> metric -> value) beside the average member's and the members' range; the spread's
        calibration (``units``: task -> unit)."""
        seconds = sum(self.member_seconds)
        lines = ["## Ensemble", "", f"{self.members} members (training seeds {', '.join(map(str, self.seeds))}) "
                 f"trained one after another on one split ({seconds:.1f} s together). Every prediction is the "
                 "members' mean (classification: the mean class probabilities) with the standard deviation over the "
                 "members in `<column>_std` columns, in the same unit (calibrated per task, below). "
                 "The test metrics above are the ensemble mean's; beside them the average member's (each member "
                 "scored alone, then averaged):", "",
                 "| task | metric | ensemble | average member | members (min - max) |",
                 "|---|---|---|---|---|"]  # fmt: skip
        for task, metrics in ensemble.items():
            for key, value in metrics.items():
                average = self.mean_member_test_metrics.get(task, {}).get(key)
                if key == "n" or average is None:
                    continue
                values = [m.get(task, {}).get(key) for m in self.member_test_metrics]
                values = [v for v in values if v is not None and math.isfinite(v)]
                spread = f"{format_value(min(values))} - {format_value(max(values))}" if values else "n/a"
                lines.append(f"| {task} | {key} | {format_value(value)} | {format_value(average)} | {spread} |")
        return lines + [""] + calibration_markdown(self.calibration, units)


@dataclass
class StartRecord:
    """Where a run's encoder started (``start_from``, resolved): ``kind`` scratch, foundation or checkpoint; for a
    checkpoint start its ``path``, ``checkpoint_id`` and ``name``, which of its heads were kept (``replayed`` on
    ``replay_rows`` corpus training compositions each from ``replay_corpus``, or ``frozen``), ``dropped`` or
    ``replaced`` by a task of the run, the settings taken from it (``notes``), and the kept heads' test metrics
    on the same test compositions before fine-tuning (physical units)."""

    kind: str  # scratch / foundation / checkpoint
    requested: str = ""  # the config's start_from
    path: str = ""
    checkpoint_id: str = ""
    name: str = ""
    kept_heads: list[str] = field(default_factory=list)
    frozen_heads: list[str] = field(default_factory=list)  # kept without replay (no corpus found): not trained
    dropped_heads: list[str] = field(default_factory=list)
    replaced_heads: list[str] = field(default_factory=list)  # a task of the run has the same name
    replay_corpus: str = ""
    replay_rows: dict[str, int] = field(default_factory=dict)  # kept head -> training compositions replayed
    encoder_lr_scale: float | None = None
    freeze_encoder_epochs: int = 0
    freeze_norm_statistics: bool = False  # the encoder's batch-norm statistics kept the start's
    kept_heads_lr_scale: float | None = None  # the kept heads' learning rate / optimizer.lr (None: not recorded)
    notes: list[str] = field(default_factory=list)
    test_metrics_before: dict[str, dict[str, float]] = field(default_factory=dict)  # kept head -> metric -> value

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "start.") -> StartRecord:
        def names(key: str) -> list[str]:
            return [str(t) for t in _take(data, key, list, where, [])]

        return cls(
            kind=_take(data, "kind", str, where) or _missing(where + "kind"),
            requested=_take(data, "requested", str, where, ""),
            path=_take(data, "path", str, where, ""),
            checkpoint_id=_take(data, "checkpoint_id", str, where, ""),
            name=_take(data, "name", str, where, ""),
            kept_heads=names("kept_heads"),
            frozen_heads=names("frozen_heads"),
            dropped_heads=names("dropped_heads"),
            replaced_heads=names("replaced_heads"),
            replay_corpus=_take(data, "replay_corpus", str, where, ""),
            replay_rows={str(k): int(v) for k, v in _numbers(data, "replay_rows", where).items()},
            encoder_lr_scale=_take(data, "encoder_lr_scale", float, where),
            freeze_encoder_epochs=_take(data, "freeze_encoder_epochs", int, where, 0),
            freeze_norm_statistics=_take(data, "freeze_norm_statistics", bool, where, False),
            kept_heads_lr_scale=_take(data, "kept_heads_lr_scale", float, where),
            notes=names("notes"),
            test_metrics_before={t: dict(m) for t, m in _take(data, "test_metrics_before", dict, where, {}).items()},
        )

    def to_mapping(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def markdown(self, after: Mapping[str, Mapping[str, float]]) -> list[str]:
        """The card.md lines of the ``## Start`` section; ``after``: task -> this model's test metrics."""
        if self.kind == "scratch":
            return ["## Start", "", f"Encoder trained from scratch (random initial weights; start_from: "
                    f"{self.requested or 'scratch'}).", ""]  # fmt: skip
        what = "the foundation" if self.kind == "foundation" else "the checkpoint"
        lines = ["## Start", "", f"Encoder fine-tuned from {what} '{self.name}' at `{self.path}` (id "
                 f"{self.checkpoint_id[:12]}; start_from: {self.requested}); encoder learning "
                 f"rate x{format_value(self.encoder_lr_scale)}, frozen for the first {self.freeze_encoder_epochs} "
                 f"epoch(s){', batch-norm statistics kept' if self.freeze_norm_statistics else ''}"
                 + (f"; kept heads' learning rate x{format_value(self.kept_heads_lr_scale)}"
                    if self.kept_heads_lr_scale is not None else "") + ".", ""]  # fmt: skip
        replayed = [t for t in self.kept_heads if t not in self.frozen_heads]
        if replayed:
            counts = ", ".join(f"{t} {self.replay_rows.get(t, 0)}" for t in replayed)
            lines += [f"Kept heads trained on a replay of `{self.replay_corpus}` (training compositions: {counts}).",
                      ""]  # fmt: skip
        if self.frozen_heads:
            lines += [f"Kept heads frozen (no corpus to replay: not trained, not measured here): "
                      f"{', '.join(self.frozen_heads)}.", ""]  # fmt: skip
        for label, heads in (("Dropped heads", self.dropped_heads), ("Heads replaced by this run's task",
                                                                      self.replaced_heads)):  # fmt: skip
            if heads:
                lines += [f"{label}: {', '.join(heads)}.", ""]
        lines += [f"- {note}" for note in self.notes] + ([""] if self.notes else [])
        if self.test_metrics_before:
            lines += ["| kept head | metric | before fine-tuning | after |", "|---|---|---|---|"]
            for task, metrics in self.test_metrics_before.items():
                for key, value in metrics.items():
                    if key != "n":
                        now = after.get(task, {}).get(key)
                        lines.append(f"| {task} | {key} | {format_value(value)} | {format_value(now)} |")
            lines.append("")
        return lines


@dataclass
class ModelCard:
    """A checkpoint's model card (``card.json``), typed. Sections not typed further are records of other
    objects: ``descriptor`` (the descriptor spec + ``dim``), ``encoder``, ``autoencoder`` (their configs) and
    ``config`` (the training config, ``TrainConfig.to_dict()``)."""

    name: str = ""
    created: str = ""  # ISO 8601 time
    tasks: list[TaskCard] = field(default_factory=list)
    data_sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> dataset, source, license, ...
    split: dict[str, int] = field(default_factory=dict)  # compositions per split
    seed: int | None = None  # training seed
    split_seed: int | None = None
    descriptor: dict[str, Any] = field(default_factory=dict)
    encoder: dict[str, Any] = field(default_factory=dict)
    autoencoder: dict[str, Any] = field(default_factory=dict)
    loss_balancer: Any = None
    n_parameters: int | None = None
    training: TrainingRecord = field(default_factory=TrainingRecord)
    versions: dict[str, str] = field(default_factory=dict)  # package -> version
    config: dict[str, Any] = field(default_factory=dict)
    finetune: FinetuneRecord | None = None
    start: StartRecord | None = None  # where the encoder started (cards written before #16: None)
    entry_point: str | None = None  # "fm-trainer" for models trained with the LightningCLI front end
    checkpoint_id: str = ""
    weights_sha256: str = ""
    rebuild: list[str] = field(default_factory=list)  # shipped models: the exact commands that rebuild them
    ensemble: EnsembleRecord | None = None  # an ensemble's members and their own metrics (single models: None)

    def task(self, name: str) -> TaskCard | None:
        """The task called ``name``, or None."""
        return next((task for task in self.tasks if task.name == name), None)

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    @property
    def training_seed(self) -> int | None:
        """The training seed (cards written before seeds were recorded separately: the split seed)."""
        return self.seed if self.seed is not None else self.split_seed

    @classmethod
    def from_mapping(cls, data: Any) -> ModelCard:
        """The card of a ``card.json`` mapping; :class:`CheckpointError` naming the key for a broken one."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{CARD_FILE}: the model card is not a JSON object")
        tasks = _take(data, "tasks", list, "")
        if tasks is None:
            _missing("tasks")
        finetune = _take(data, "finetune", dict, "")
        start = _take(data, "start", dict, "")
        ensemble = _take(data, "ensemble", dict, "")
        sources = _take(data, "data_sources", dict, "", {})
        return cls(
            name=_take(data, "name", str, "", ""),
            created=_take(data, "created", str, "", ""),
            tasks=[TaskCard.from_mapping(entry, f"tasks[{i}].") for i, entry in enumerate(tasks)],
            data_sources={str(k): v if isinstance(v, dict) else {"dataset": str(v)} for k, v in sources.items()},
            split=_numbers(data, "split", ""),
            seed=_take(data, "seed", int, ""),
            split_seed=_take(data, "split_seed", int, ""),
            descriptor=_take(data, "descriptor", dict, "", {}),
            encoder=_take(data, "encoder", dict, "", {}),
            autoencoder=_take(data, "autoencoder", dict, "", {}),
            loss_balancer=data.get("loss_balancer"),
            n_parameters=_take(data, "n_parameters", int, ""),
            training=TrainingRecord.from_mapping(_take(data, "training", dict, "", {})),
            versions={str(k): str(v) for k, v in _take(data, "versions", dict, "", {}).items()},
            config=_take(data, "config", dict, "", {}),
            finetune=FinetuneRecord.from_mapping(finetune) if finetune is not None else None,
            start=StartRecord.from_mapping(start) if start is not None else None,
            entry_point=_take(data, "entry_point", str, ""),
            checkpoint_id=_take(data, "checkpoint_id", str, "", ""),
            weights_sha256=_take(data, "weights_sha256", str, "", ""),
            rebuild=[str(line) for line in _take(data, "rebuild", list, "", [])],
            ensemble=EnsembleRecord.from_mapping(ensemble) if ensemble is not None else None,
        )

    def to_mapping(self) -> dict[str, Any]:
        """The ``card.json`` content (keys in the order written since format version 1)."""
        data: dict[str, Any] = {
            "name": self.name,
            "created": self.created,
            "tasks": [task.to_mapping() for task in self.tasks],
            "data_sources": self.data_sources,
            "split": self.split,
            "seed": self.seed,
            "split_seed": self.split_seed,
            "descriptor": self.descriptor,
            "encoder": self.encoder,
            "autoencoder": self.autoencoder,
            "loss_balancer": self.loss_balancer,
            "n_parameters": self.n_parameters,
            "training": self.training.to_mapping(),
            "versions": self.versions,
            "config": self.config,
        }
        if self.finetune is not None:
            data["finetune"] = self.finetune.to_mapping()
        if self.start is not None:
            data["start"] = self.start.to_mapping()
        if self.entry_point is not None:
            data["entry_point"] = self.entry_point
        if self.checkpoint_id or self.weights_sha256:
            data |= {"checkpoint_id": self.checkpoint_id, "weights_sha256": self.weights_sha256}
        if self.rebuild:
            data["rebuild"] = list(self.rebuild)
        if self.ensemble is not None:
            data["ensemble"] = self.ensemble.to_mapping()
        return data

    def render_markdown(self) -> str:
        """``card.md``: the card for people (test metrics, data, split, fine-tuning, training, versions)."""
        lines = [f"# Model card: {self.name or 'fm_engine model'}", ""]
        lines += [f"Created {self.created} with fm_engine {self.versions.get('fm_engine')}; "
                  f"{self.n_parameters or 0:,} parameters; descriptor {self.descriptor.get('kind')} "
                  f"({self.descriptor.get('dim')} dims); encoder {self.encoder.get('type')}.", ""]  # fmt: skip
        lines += ["## Test metrics (physical units)", "", "| task | type | unit | test n | metrics |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for task in self.tasks:
            metrics, intervals = task.test_metrics, task.test_metrics_ci95
            shown = ", ".join(f"{k} {format_metric(v, intervals.get(k))}" for k, v in metrics.items() if k != "n")
            lines.append(
                f"| {task.name} | {task.type} | {task.unit_or_classes} | {format_value(metrics.get('n'))} | {shown} |"
            )
        lines += ["", "MAE/RMSE are in the task's unit; sequence tasks pool all curve points. [low, high]: 95 % "
                  "bootstrap interval over the test compositions (a curve is resampled whole).", ""]  # fmt: skip
        decisions = [task.decision_text() for task in self.tasks if task.decision_text()]
        if decisions:
            lines += ["Predicted class of binary tasks (accuracy, balanced accuracy and macro-F1 use it; ROC-AUC "
                      "uses the probabilities):", ""] + [f"- {text}" for text in decisions] + [""]  # fmt: skip
        bounds = [task.lower_bound_text() for task in self.tasks if task.lower_bound_text()]
        if bounds:
            lines += ["Lower bounds (predictions below are reported at the bound; the metrics above include it):",
                      ""] + [f"- {text}" for text in bounds] + [""]  # fmt: skip
        lines += ["## Data", "", "| task | train | val | test | test distance to training (median / max) | source | "
                  "license |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for task in self.tasks:
            source, c = self.data_sources.get(task.name, {}), task.compositions
            reach = task.test_distance_to_training
            reach_text = f"{reach['median']:.2f} / {reach['max']:.2f}" if reach else "n/a"
            lines.append(
                f"| {task.name} | {c.get('train')} | {c.get('val')} | {c.get('test')} | {reach_text} | "
                f"{source.get('dataset', '')} | {source.get('license', '')[:60]} |"
            )
        lines += ["", "Distance: the fraction of atoms that differ from the nearest training composition of the "
                  "task. Predictions further out than the max are extrapolations the test metrics do not cover.",
                  ""]  # fmt: skip
        split, seeds = self.split, f"split seed {self.split_seed}; training seed {self.training_seed}"
        sizes = f"{split.get('train')} train / {split.get('val')} val / {split.get('test')} test"
        lines += ["", f"Compositions: {sizes} ({seeds}).", ""]
        if self.ensemble is not None:
            lines += self.ensemble.markdown(
                {task.name: task.test_metrics for task in self.tasks}, {task.name: task.unit for task in self.tasks}
            )
        if self.start is not None:
            lines += self.start.markdown({task.name: task.test_metrics for task in self.tasks})
        if self.finetune is not None:
            tuned = self.finetune
            lines += ["## Fine-tuning", "", f"Retrained heads: {', '.join(tuned.trained_heads)}; frozen: "
                      f"{tuned.frozen} (from checkpoint {tuned.source_checkpoint_id[:12]}).", "",
                      "| task | metric | before | after |", "|---|---|---|---|"]  # fmt: skip
            for task, metrics in tuned.test_metrics_after.items():
                for key, value in metrics.items():
                    if key != "n":
                        before = tuned.test_metrics_before.get(task, {}).get(key)
                        lines.append(f"| {task} | {key} | {format_value(before)} | {format_value(value)} |")
            lines.append("")
        lines += ["## Training", ""]
        training = self.training.to_mapping()
        lines += [f"- {key.replace('_', ' ')}: {format_value(value)}" for key, value in training.items()]
        lines += ["", "## Versions", ""] + [f"- {k} {v}" for k, v in self.versions.items()]
        if self.rebuild:
            lines += ["", "## Rebuild", "", "```bash", *self.rebuild, "```"]
        return "\n".join(lines) + "\n"


def read_card(checkpoint_dir: str | Path) -> ModelCard | None:
    """The model card of a checkpoint directory; None when it has none, :class:`CheckpointError` when
    ``card.json`` is unreadable or broken."""
    path = Path(checkpoint_dir) / CARD_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"the model card is unreadable ({error})") from None
    return ModelCard.from_mapping(data)


# ------------------------------------------------------------------------------------------ building a card
def package_versions() -> dict[str, str]:
    """fm_engine's, Python's and the main packages' versions (recorded in cards and design runs)."""
    versions = {"fm_engine": __version__, "python": platform.python_version()}
    for name in ("torch", "lightning", "numpy", "pandas", "pymatgen", "safetensors"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def data_sources(specs: Sequence[TaskSpec]) -> dict[str, dict[str, str]]:
    """Per task: the bundled dataset its files come from (name, source, licence, citation), or the user files."""
    from fm_engine.datasets import bundled_datasets

    by_file = {}
    for dataset in bundled_datasets():
        for task in dataset.tasks:
            by_file[str(task.path)] = {"dataset": dataset.name, "source": dataset.source,
                                       "license": dataset.license, "citation": dataset.citation}  # fmt: skip
    sources = {}
    for spec in specs:
        bundled = [by_file[f] for f in spec.data_files if f in by_file] + _corpus_sources(spec)
        sources[spec.name] = bundled[0] if bundled else {"dataset": "user data", "files": ", ".join(spec.data_files)}
    return sources


def _corpus_sources(spec: TaskSpec) -> list[dict[str, str]]:
    """The provenance of a pretraining-corpus task (its ``tasks.json`` entry's ``source``), if ``spec`` is one."""
    from fm_engine.foundation.corpus import CORPUS_FILE, CorpusError, read_tasks

    found = []
    for file in spec.data_files:
        if Path(file).name == CORPUS_FILE:
            try:
                tasks = {task.name: task for task in read_tasks(Path(file).parent)[0]}
            except CorpusError:
                continue
            if spec.name in tasks:
                source = {k: str(v) for k, v in dataclasses.asdict(tasks[spec.name].source).items() if v}
                found.append({"dataset": "pretraining corpus", "files": file} | source)
    return found


def tested_reach_by_task(dm: CompositionDataModule, tasks: Sequence[str]) -> dict[str, dict[str, float] | None]:
    """Per task: median and max distance (fraction of atoms that differ) of its test compositions from its
    training compositions: how far from the training data the test metrics reach; None without both. One
    element-pair search over every task's training compositions serves all tasks
    (:func:`fm_engine.applicability.nearest_by_group`)."""
    import numpy as np

    from fm_engine.applicability import GroupedIndex, ReferenceIndex, nearest_by_group

    labelled = np.stack([dm.masks[task] for task in tasks], axis=1) if tasks else np.zeros((len(dm.keys), 0), bool)
    train = np.flatnonzero(labelled.any(axis=1) & (dm.split == "train"))
    test = np.flatnonzero(labelled.any(axis=1) & (dm.split == "test"))
    grouped = GroupedIndex(ReferenceIndex(np.asarray(dm.weights[train])), labelled[train])
    found = nearest_by_group(np.asarray(dm.weights[test]), grouped)
    reach: dict[str, dict[str, float] | None] = {}
    for column, task in enumerate(tasks):
        distance = found[labelled[test, column], column]
        distance = distance[np.isfinite(distance)]
        reach[task] = (
            {"median": round(float(np.median(distance)), 4), "max": round(float(distance.max()), 4)}
            if len(distance) else None
        )  # fmt: skip
    return reach


def decision_fields(
    model: FlexibleMultiTaskModel, task: str, thresholds: Mapping[str, ThresholdChoice | None]
) -> dict[str, Any]:
    """The :class:`TaskCard` fields on a binary task's decision threshold (none for other tasks): the model's
    threshold and how it was set; ``thresholds``: the tasks set on the validation split before the card's
    evaluation, with the figures behind an automatic choice."""
    if task not in thresholds:
        return {}
    threshold, choice = model.decision_threshold(task), thresholds[task]
    if choice is not None:
        figures = {"n": choice.n, "balanced_accuracy": choice.balanced_accuracy,
                   "balanced_accuracy_at_half": choice.balanced_accuracy_at_half}  # fmt: skip
        return {"decision_threshold": threshold, "decision_threshold_rule": "validation",
                "decision_threshold_validation": figures}  # fmt: skip
    rule = "none" if threshold is None else "fixed"
    return {"decision_threshold": threshold, "decision_threshold_rule": rule}


def build_card(
    *,
    config: TrainConfig,
    model: FlexibleMultiTaskModel,
    dm: CompositionDataModule,
    evaluations: Mapping[str, StageEvaluation],
    best_epoch: int,
    best_val_loss: float,
    epoch_seconds: Sequence[float],
    samples_seen: int,
    seconds: float,
    epochs: int,
    segments: int = 1,
    created: str,
) -> ModelCard:
    """The card of a trained model: ``evaluations`` per split (test with intervals), the data module's split
    and counts, the training run's facts (``seconds``: wall time; ``epoch_seconds``: each epoch's time)."""
    import numpy as np
    import torch

    summary = dm.summary().set_index("task")
    reach = tested_reach_by_task(dm, [name for name in model.tasks if name in dm.masks])
    tasks = []
    for task in model.tasks.values():
        if task.name not in summary.index:  # a head carried without data in this run (e.g. a frozen kept head)
            tasks.append(TaskCard(name=task.name, type=task.type.value, unit=task.unit, t_unit=task.t_unit,
                                  classes=task.classes, description=task.description))  # fmt: skip
            continue
        row = summary.loc[task.name]
        tasks.append(
            TaskCard(
                name=task.name,
                type=task.type.value,
                unit=task.unit,
                t_unit=task.t_unit,
                classes=task.classes,
                description=task.description,
                compositions={stage: int(row[stage]) for stage in STAGES} | {"train_kept": int(row["train_kept"])},
                bad_rows_skipped=int(row["bad_rows"]),
                test_metrics=evaluations["test"].metrics.get(task.name, {}),
                test_metrics_ci95=evaluations["test"].intervals.get(task.name, {}),
                val_metrics=evaluations["val"].metrics.get(task.name, {}),
                test_distance_to_training=reach[task.name],
                **decision_fields(model, task.name, evaluations["val"].thresholds),
                lower_bound=model.config.scalers[task.name].floor,
                lower_bound_share=model.config.scalers[task.name].floor_share,
            )
        )
    training = TrainingRecord(
        epochs_run=epochs,
        best_epoch=best_epoch,
        best_val_loss=best_val_loss,
        wall_time_s=round(seconds, 2),
        segments=segments,
        mean_epoch_s=round(float(np.mean(epoch_seconds)), 3) if epoch_seconds else None,
        samples_per_s=round(samples_seen / sum(epoch_seconds), 1) if epoch_seconds else None,
        devices=config.trainer.devices,
        strategy=config.trainer.strategy,
        torch_threads=torch.get_num_threads(),
    )
    return ModelCard(
        name=config.name,
        created=created,
        tasks=tasks,
        data_sources=data_sources(list(model.tasks.values())),
        split={stage: int((dm.split == stage).sum()) for stage in STAGES},
        seed=config.seed,
        split_seed=dm.split_seed,
        descriptor=config.descriptor.to_dict() | {"dim": dm.descriptor.dim},
        encoder=config.model.encoder.to_dict(),
        autoencoder=dict(config.model.autoencoder.__dict__),
        loss_balancer=config.model.loss_balancer,
        n_parameters=sum(p.numel() for p in model.parameters()),
        training=training,
        versions=package_versions(),
        config=config.to_dict(),
    )
