"""``train(config, run_dir)``: data -> scalers -> model -> Lightning fit -> best weights -> test metrics
-> checkpoint with model card."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import re
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import yaml
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fm_engine.applicability import distinct_rows
from fm_engine.cards import FinetuneRecord, StartRecord, build_card
from fm_engine.checkpoints import TASKS_SEPARATOR, save_checkpoint
from fm_engine.config import read_config_file, read_text_file
from fm_engine.data import CompositionDataModule
from fm_engine.data.corpus import CorpusDataModule
from fm_engine.data.replay_mix import ReplayMix
from fm_engine.descriptors import Descriptor
from fm_engine.floors import fit_lower_bound
from fm_engine.models import FlexibleMultiTaskModel, ModelConfig, TargetScaler
from fm_engine.run_lock import hold_run, is_rank_zero, own_identity
from fm_engine.safe_io import atomic_write_json, atomic_write_text
from fm_engine.tasks import TaskSpec, TaskType
from fm_engine.threads import configure_threads
from fm_engine.training.callbacks import LEGACY_STATE_KEY, EncoderWarmup, run_callbacks
from fm_engine.training.config import START_SCRATCH, TrainConfig, resolve_data_files
from fm_engine.training.evaluate import (
    CARD_BOOTSTRAP_RESAMPLES,
    StageEvaluation,
    choose_decision_thresholds,
    collect_outputs,
    evaluate,
)
from fm_engine.training.lightning import MultiTaskModule
from fm_engine.training.run_files import RunDirectory, WallClock, now_iso
from fm_engine.training.start import (
    ResolvedStart,
    config_for_start,
    freeze_heads,
    plan_start,
    read_start_file,
    replay_mix_of,
    resolve_start,
    start_data_sources,
    write_start_file,
)

_fitting = False


def fitting() -> bool:
    """True while Lightning's fit loop runs (it handles SIGTERM itself then)."""
    return _fitting


def _quiet_lightning() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*val_dataloader.*validation_step.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # a fine-tune keeps the start's batch-norm statistics (finetune.freeze_norm_statistics): those modules stay in
    # eval mode on purpose
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")
    # a last.ckpt from before the callbacks were split: ModelSelection takes over its state (not a missing callback)
    warnings.filterwarnings("ignore", message=f".*Please add the following callbacks: \\['{LEGACY_STATE_KEY}'\\]")


@dataclass
class FinetuneSpec:
    """Retrain only ``tasks``' heads of a trained ``model``."""

    model: FlexibleMultiTaskModel
    tasks: list[str]
    source_checkpoint_id: str = ""
    carried: list[str] = dataclasses.field(default_factory=list)  # heads without data (frozen kept heads): not read


def freeze_all_but(model: FlexibleMultiTaskModel, tasks: list[str]) -> None:
    """Freeze the encoder (weights and norm statistics), the autoencoder, the balancer terms and every
    head not in ``tasks``; the named heads stay trainable."""
    unknown = [t for t in tasks if t not in model.tasks]
    if unknown or not tasks:
        raise ValueError(f"unknown task(s) to fine-tune: {', '.join(unknown) or '(none given)'} "
                         f"(tasks: {', '.join(model.tasks)})")  # fmt: skip
    model.freeze_encoder()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in tasks:
        for parameter in model.heads[name].parameters():
            parameter.requires_grad_(True)


@dataclass
class StartFrom:
    """Train a given model on a given data module (e.g. one step of a continual rehearsal).

    ``monitor_tasks``: the tasks whose validation loss drives early stopping and best-epoch choice
    (default: every task of the model)."""

    model: FlexibleMultiTaskModel
    datamodule: CompositionDataModule
    monitor_tasks: list[str] | None = None


@dataclass
class TrainResult:
    state: str  # done / cancelled
    run_dir: Path
    checkpoint: Path | None
    test: StageEvaluation | None
    epochs: int
    seconds: float


def fit_scalers(dm: CompositionDataModule, tasks: list[str] | None = None) -> dict[str, TargetScaler]:
    """Per-task normalisation and lower bound (:mod:`fm_engine.floors`) from the (kept) training rows, for
    ``tasks`` (default: every task of ``dm``)."""
    scalers: dict[str, TargetScaler] = {}
    for task in dm.tasks:
        if tasks is not None and task.name not in tasks:
            continue
        keep = dm.train_keep[task.name]
        if task.type is TaskType.CLASSIFICATION:
            scalers[task.name] = TargetScaler()
            continue
        if task.type is TaskType.KERNEL_REGRESSION:
            curves = [dm.curves[task.name][i] for i in np.flatnonzero(keep)]
            if not curves:
                raise ValueError(f"task '{task.name}' has no training curves")
            t = np.concatenate([c[0] for c in curves]).astype(np.float64)
            y = np.concatenate([c[1] for c in curves]).astype(np.float64)
            floor, share = fit_lower_bound(task.lower_bound, y)
            scalers[task.name] = TargetScaler(
                mean=[float(y.mean())],
                std=[float(y.std()) or 1.0],
                t_mean=float(t.mean()),
                t_std=float(t.std()) or 1.0,
                t_min=float(t.min()),
                t_max=float(t.max()),
                floor=floor,
                floor_share=share,
            )
            continue
        values = dm.values[task.name][keep].astype(np.float64)
        if len(values) == 0:
            raise ValueError(f"task '{task.name}' has no training rows")
        values = values.reshape(len(values), -1)
        std = values.std(axis=0)
        floor, share = fit_lower_bound(task.lower_bound, values)
        scalers[task.name] = TargetScaler(mean=values.mean(axis=0).tolist(), std=np.where(std > 0, std, 1.0).tolist(),
                                          floor=floor, floor_share=share)  # fmt: skip
    return scalers


def resolve_class_weights(dm: CompositionDataModule) -> None:
    """Turn ``class_weights: balanced`` into numbers (inverse class frequency on the training rows); refuse a
    list of weights whose length differs from the task's classes, or a fixed ``decision_threshold`` for a task
    that has not two classes (known once the data is read)."""
    for task in dm.tasks:
        task.check_decision_threshold()
        weights = task.class_weights
        if isinstance(weights, list) and task.classes is not None and len(weights) != len(task.classes):
            raise ValueError(
                f"task '{task.name}': class_weights: expected {len(task.classes)} weights (one per class: "
                f"{', '.join(task.classes)}), got {len(weights)}"
            )
        if task.type is TaskType.CLASSIFICATION and task.class_weights == "balanced":
            labels = dm.values[task.name][dm.train_keep[task.name]]
            counts = np.bincount(labels, minlength=len(task.classes or []))
            weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 1.0)
            task.class_weights = [round(float(w), 6) for w in weights]


def datamodule_options(config: TrainConfig) -> dict[str, Any]:
    """The keyword options of :class:`CompositionDataModule` that ``config`` sets (descriptor, seed, data
    section): the one mapping from a training config to its datamodule (``fm train`` and ``fm-trainer``)."""
    data = config.data
    return {
        "descriptor": Descriptor(config.descriptor), "val_ratio": data.val_ratio, "test_ratio": data.test_ratio,
        "seed": config.seed, "split_seed": data.split_seed, "batch_size": data.batch_size,
        "num_workers": data.num_workers, "allow_pickle": data.allow_pickle,
    }  # fmt: skip


def build_datamodule(
    config: TrainConfig, specs: list[TaskSpec] | None = None, *, replay_mix: ReplayMix | None = None
) -> CompositionDataModule:
    """The data module of ``config``: over its corpus (``data.corpus``) or its tasks' own files (``replay_mix``:
    a fine-tune's epoch, see :func:`fm_engine.training.start.replay_mix_of`)."""
    specs = specs if specs is not None else config.task_specs()
    corpus = config.corpus_dir()
    if corpus is not None:
        return CorpusDataModule(corpus, specs, **datamodule_options(config))
    return CompositionDataModule(specs, **datamodule_options(config), replay_mix=replay_mix)


def recorded_specs(specs: list[TaskSpec], config: TrainConfig) -> list[TaskSpec]:
    """Copies of task specs recorded in a checkpoint or run folder (``model_config.json``, ``config.json``),
    relative ``data_files`` resolved against ``config``'s data folder (see :func:`recorded_config`)."""
    return [resolve_data_files(dataclasses.replace(spec), config.data_base()) for spec in specs]


def read_model_config(path: Path) -> ModelConfig:
    """A run folder's ``model_config.json``; an unreadable one raises a ``ValueError`` naming it."""
    try:
        return ModelConfig.from_dict(json.loads(read_text_file(path, what="model config")))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a readable model config ({type(error).__name__}: {error})") from None


def recorded_datamodule(
    config: TrainConfig, run_path: Path, model_config: ModelConfig
) -> tuple[CompositionDataModule, StartRecord | None, dict[str, dict[str, str]]]:
    """The data module a run folder trained on, rebuilt from its records (``config``: its ``config.yaml``;
    ``model_config``: its ``model_config.json``), set up, with the run's start record and the kept heads' data
    sources (``--resume``; an ensemble's evaluation of its members). Heads carried frozen have no data in it."""
    start_record, start_sources = read_start_file(run_path, config)
    frozen = start_record.frozen_heads if start_record is not None else []
    with_data = [spec for spec in model_config.tasks if spec.name not in frozen]
    dm = build_datamodule(config, recorded_specs(with_data, config), replay_mix=replay_mix_of(config))
    dm.setup()
    return dm, start_record, start_sources


def check_resume_state(path: Path) -> None:
    """Load ``last.ckpt`` with torch's safe loader (``weights_only``: tensors and plain values only) before any
    work; a file holding other Python objects (which could run code) or a corrupt one raises a one-line
    ``ValueError`` naming it, instead of an ``UnpicklingError`` traceback from inside Lightning."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: cannot be resumed: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on an unusual pickle protocol
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f"it asks for {found.group(1)}" if found else "it holds Python objects other than weights"
        raise ValueError(
            f"{path}: refused to resume: {what}, which could run code; only a last.ckpt written by fm train is "
            "resumed (start a new run with --config instead)"
        ) from None
    except Exception as error:  # truncated zip, not a torch file, ...
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0][:160]
        raise ValueError(f"{path}: cannot be resumed: not a readable training state ({first})") from None


def build_model(config: TrainConfig, dm: CompositionDataModule) -> FlexibleMultiTaskModel:
    """A new model for every task of ``dm`` (class weights resolved, targets normalised on the train split)."""
    dm.setup()
    resolve_class_weights(dm)
    return model_for(config, dm, list(dm.tasks), fit_scalers(dm))


def model_for(
    config: TrainConfig, dm: CompositionDataModule, tasks: list[TaskSpec], scalers: dict[str, TargetScaler]
) -> FlexibleMultiTaskModel:
    """A new model with heads for ``tasks`` only, on ``dm``'s descriptor; its input standardisation (if the
    config asks for it) fitted on the descriptors of ``dm``'s training compositions."""
    model_config = ModelConfig(
        input_dim=dm.descriptor.dim,
        n_tokens=dm.descriptor.n_tokens,
        tasks=list(tasks),
        scalers={task.name: scalers[task.name] for task in tasks},
        encoder=config.model.encoder,
        autoencoder=config.model.autoencoder,
        loss_balancer=config.model.loss_balancer,
        descriptor=config.descriptor,
        standardise_inputs=config.model.standardise_inputs,
    )
    model = FlexibleMultiTaskModel(model_config)
    if model_config.standardise_inputs:
        model.fit_input_scaling(dm.x[dm.stage_indices("train")])
    return model


def training_compositions(dm: CompositionDataModule, tasks: list[str] | None = None) -> pd.DataFrame:
    """Canonical keys of every composition labelled for ``tasks`` (default: any task) with its split and
    the tasks it is labelled for, ``;``-separated (saved in the checkpoint; see fm_engine.applicability)."""
    names = tasks if tasks is not None else [t.name for t in dm.tasks]
    labelled = np.stack([dm.masks[n] for n in names], axis=1) & (dm.split != "unlabelled")[:, None]
    rows = np.flatnonzero(labelled.any(axis=1))
    patterns, pattern_of_row = distinct_rows(labelled[rows])  # few distinct task sets
    text = np.array([TASKS_SEPARATOR.join(n for n, on in zip(names, p, strict=True) if on) for p in patterns] or [""],
                    dtype=object)  # fmt: skip
    return pd.DataFrame(
        {
            "composition": np.asarray(dm.keys, dtype=object)[rows],
            "split": dm.split[rows],
            "tasks": text[pattern_of_row.reshape(-1)] if len(rows) else np.zeros(0, dtype=object),
        }
    )


def evaluate_for_card(model: FlexibleMultiTaskModel, dm: CompositionDataModule) -> dict[str, StageEvaluation]:
    """The validation and test metrics the model card shows; the test metrics with 95 % bootstrap intervals.
    First the decision thresholds of binary classification tasks are set on the validation split
    (:func:`~fm_engine.training.evaluate.choose_decision_thresholds`; the figures behind them in the validation
    evaluation's ``thresholds``), so every metric on predicted classes uses them. (The training split is not
    evaluated: the card does not show it, and at corpus scale it is the longest pass.)"""
    validation = collect_outputs(model, dm, "val")  # one pass serves the thresholds and the metrics
    thresholds = choose_decision_thresholds(model, dm, stage="val", collected=validation)
    evaluations = {
        "val": evaluate(model, dm, "val", collected=validation),
        "test": evaluate(model, dm, "test", n_bootstrap=CARD_BOOTSTRAP_RESAMPLES),
    }
    evaluations["val"].thresholds = thresholds
    return evaluations


def _write_model_config(run: RunDirectory, model: FlexibleMultiTaskModel) -> None:
    atomic_write_json(run.model_config_path, model.config.to_dict(), sort_keys=False)


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress_bar: bool | None = None,
    finetune: FinetuneSpec | None = None,
    start: StartFrom | None = None,
) -> TrainResult:
    """Train a model into ``run_dir``; returns when done or cancelled (SIGTERM). See module docstring.

    ``finetune`` starts from a trained model and retrains only the named heads (everything else frozen);
    ``start`` trains a given model on a given data module. A config with ``ensemble.members`` > 1 trains an
    ensemble (:mod:`fm_engine.training.ensemble`).

    The run directory is locked for this process first (:mod:`fm_engine.run_lock`): a directory
    another live process trains into raises :class:`RunInUseError` (a ``ValueError``) before anything is
    read or written; temp files a killed run left are removed.
    """
    if resume and not Path(run_dir).is_dir():
        raise ValueError(f"{run_dir}: nothing to resume (no such run directory)")
    if finetune is None and start is None:
        from fm_engine.training.ensemble import is_ensemble_run, train_ensemble

        if is_ensemble_run(config, run_dir, resume=resume):  # config.ensemble.members > 1: one member at a time
            return train_ensemble(config, run_dir, resume=resume, progress_bar=progress_bar)
    begin = None
    if not resume and finetune is None and start is None:
        begin = resolve_start(config)  # a bad start_from fails here, before any folder or data is touched
    options: dict[str, Any] = {"resume": resume, "progress_bar": progress_bar, "finetune": finetune, "start": start}
    if not is_rank_zero():  # DDP's other ranks write no run files; rank 0 holds the lock
        return _train(config, run_dir, begin=begin, **options)
    with hold_run(run_dir):
        return _train(config, run_dir, begin=begin, **options)


def _train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool,
    progress_bar: bool | None,
    finetune: FinetuneSpec | None,
    start: StartFrom | None,
    begin: ResolvedStart | None = None,
) -> TrainResult:
    global _fitting
    _quiet_lightning()
    if config is not None:
        config.trainer.check_machine()
    configure_threads()  # one torch thread, passive OpenMP waits (fm_engine.threads)
    run = RunDirectory(run_dir)
    rank_zero = is_rank_zero()
    clock = WallClock()
    start_notes: list[str] = []
    start_record, start_sources = None, {}
    if begin is not None:
        config, start_notes = config_for_start(config, begin)  # the start's encoder settings, the start recorded
        if begin.checkpoint is None:
            start_record = StartRecord(START_SCRATCH, begin.requested)
    if resume:
        if not run.resume_path.exists():
            raise ValueError(f"{run.path}: nothing to resume (no last.ckpt)")
        check_resume_state(run.resume_path)
        # The run folder's records, never the user's in-person opt-in: no pickles, paths against the run.
        config = TrainConfig.from_record(read_config_file(run.config_path), anchor=run.path)
        if rank_zero:
            earlier = run.read_status()
            clock.previous_s = float(earlier.get("wall_time_s") or 0.0)
            clock.segments = int(earlier.get("segments") or 1) + 1
            run.update_status(
                state="queued", **own_identity(), finished_at=None, message="resuming: loading data",
                segments=clock.segments, wall_time_s=round(clock.total(), 2),
            )  # fmt: skip
    elif rank_zero:
        if run.checkpoint_path.exists() or run.resume_path.exists():
            raise ValueError(f"{run.path} already holds a run; choose another --out or use --resume")
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))
        run.update_status(
            state="queued", **own_identity(), created_at=now_iso(), name=config.name, message="loading data",
            segments=1, wall_time_s=0.0,
        )  # fmt: skip
    try:
        L.seed_everything(config.seed, workers=True, verbose=False)
        dm = build_datamodule(config)
        if resume:
            model_config = read_model_config(run.model_config_path)
            dm, start_record, start_sources = recorded_datamodule(config, run.path, model_config)
            model = FlexibleMultiTaskModel(model_config)
            freeze_heads(model, start_record.frozen_heads if start_record is not None else [])
        elif finetune is not None:
            model = finetune.model
            with_data = [spec for spec in model.tasks.values() if spec.name not in finetune.carried]
            dm = build_datamodule(config, recorded_specs(with_data, config))
            dm.setup()
            freeze_all_but(model, finetune.tasks)
            before = evaluate(model, dm, "test")
            if rank_zero:
                _write_model_config(run, model)
        elif start is not None:
            model, dm = start.model, start.datamodule
            if rank_zero:
                _write_model_config(run, model)
        elif begin is not None and begin.checkpoint is not None:
            plan = plan_start(config, begin, run.path, start_notes)
            model, dm, start_record = plan.model, plan.datamodule, plan.record
            before = evaluate(model, dm, "test")
            start_record.test_metrics_before = {t: before.metrics[t] for t in plan.record.kept_heads
                                                if t in before.metrics}  # fmt: skip
            start_sources = start_data_sources(begin, start_record)
            if rank_zero:
                write_start_file(run.path, start_record, start_sources)
                _write_model_config(run, model)
        else:
            model = build_model(config, dm)
            if rank_zero:
                _write_model_config(run, model)
        dm.setup()
        if config.apply_recipe(dm.recipe) and rank_zero:  # settings left to the data size: record them resolved
            atomic_write_text(run.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))
        optimizer = config.optimizer
        from_start = finetune is None and start is None and config.starts_from_checkpoint  # also on --resume
        module = MultiTaskModule(
            model, lr=optimizer.lr, weight_decay=optimizer.weight_decay, scheduler=optimizer.scheduler,
            encoder_lr_scale=config.finetune.encoder_lr_scale if from_start else 1.0,
            slow_heads=tuple(t for t in start_record.kept_heads if t not in start_record.frozen_heads)
            if from_start and start_record is not None else (),
            slow_heads_lr_scale=config.finetune.kept_heads_lr_scale,
        )  # fmt: skip
        if from_start:
            model.freeze_norm_statistics(config.finetune.freeze_norm_statistics)
        monitor = start.monitor_tasks if start is not None else None
        if from_start:  # the run's own tasks choose the best epoch; the kept heads ride along on their replay
            monitor = [spec.name for spec in config.task_specs()]
        callbacks = run_callbacks(run, dm, config.trainer, clock=clock, monitor_tasks=monitor)
        extra = [EncoderWarmup(config.finetune.freeze_encoder_epochs)] if from_start else []
        show_bar = config.trainer.progress_bar if progress_bar is None else progress_bar
        trainer = L.Trainer(
            max_epochs=config.trainer.max_epochs,
            accelerator=config.trainer.accelerator,
            devices=config.trainer.devices,
            num_nodes=config.trainer.num_nodes,
            strategy=config.trainer.strategy,
            deterministic=config.trainer.deterministic,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=extra + callbacks.as_list() + ([TQDMProgressBar(refresh_rate=10)] if show_bar else []),
            enable_progress_bar=show_bar,
        )
        _fitting = True
        try:
            trainer.fit(
                module,
                datamodule=dm,
                ckpt_path=str(run.resume_path) if resume else None,
                weights_only=True if resume else None,
            )
        except SIGTERMException:
            return TrainResult("cancelled", run.path, None, None, trainer.current_epoch, clock.total())
        finally:
            _fitting = False
        if not trainer.is_global_zero:
            return TrainResult("done", run.path, None, None, trainer.current_epoch, clock.total())
        callbacks.selection.best.restore(model)
        stats = callbacks.stats()
        evaluations = evaluate_for_card(model, dm)
        seconds = clock.total()
        card = build_card(
            config=config, model=model, dm=dm, evaluations=evaluations, best_epoch=stats.best_epoch,
            best_val_loss=stats.best_loss, epoch_seconds=stats.epoch_seconds, samples_seen=stats.samples_seen,
            seconds=seconds, epochs=trainer.current_epoch, segments=clock.segments, created=now_iso(),
        )  # fmt: skip
        if start_record is not None:
            card.start = start_record
            card.data_sources |= start_sources
        if finetune is not None:
            card.finetune = FinetuneRecord(
                source_checkpoint_id=finetune.source_checkpoint_id,
                trained_heads=list(finetune.tasks),
                frozen="encoder, autoencoder, loss-balancer terms and every other head",
                test_metrics_before=before.metrics,
                test_metrics_after=evaluations["test"].metrics,
            )
        with_data = [name for name in model.tasks if name in dm.masks]  # not a head carried without data
        checkpoint = save_checkpoint(
            model, run.checkpoint_path, card=card, compositions=training_compositions(dm, with_data)
        )
        run.update_status(
            state="done",
            finished_at=now_iso(),
            epoch=trainer.current_epoch,
            eta_seconds=0,
            message=f"done in {seconds:.0f} s; best epoch {stats.best_epoch}",
            wall_time_s=round(seconds, 2),
            test_metrics=evaluations["test"].metrics,
        )
        return TrainResult("done", run.path, checkpoint, evaluations["test"], trainer.current_epoch, seconds)
    except BaseException as error:
        if rank_zero and not isinstance(error, SIGTERMException):
            state = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
            run.update_status(
                state=state, finished_at=now_iso(), message=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc(limit=8),
            )  # fmt: skip
        raise
