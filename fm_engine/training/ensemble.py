"""Ensembles (``ensemble: {members: N}``, ``fm train --ensemble N``): N members trained one after another on one
split, then saved as one checkpoint whose predictions are the members' mean and standard deviation.

The run folder of an ensemble::

    run/
      config.yaml, status.json   the whole run (status: which member trains, then done)
      members/member_<k>/        member k's ordinary run folder (its own status, metrics, last.ckpt, checkpoint/)
      checkpoint/                the ensemble: member 0 at the top (with the ensemble's decision thresholds), members
                                 1..N-1 in checkpoint/members/<k>/ (see :mod:`fm_engine.checkpoints`), one card

Member k is the run's config with ``seed`` = its seed (:meth:`EnsembleConfig.member_seeds`: ``seed + k`` unless
``ensemble.seeds`` says) and ``data.split_seed`` fixed to the run's split seed, so every member trains, validates
and tests on the same compositions and member 0 is the single model of the same config. Members train side by
side, one process each, as many at once as ``ensemble.parallel`` allows (:mod:`fm_engine.training.member_processes`;
a training uses one torch thread, so 2 cores train 2 members at once), or one after another in this process
(``parallel: 1``, and always for ``fm finetune``, whose members are models in memory). ``--resume`` keeps finished
members, resumes each unfinished one from its ``last.ckpt`` and trains the rest.

The ensemble's card scores the members' mean on the validation and test splits (one data module rebuilt from member
0's records): a binary task's decision threshold is chosen on the validation split from the mean probabilities, and
the card's ensemble section sets each member's own test metrics, and their average, beside the ensemble's. The
spread of every regression and curve task is calibrated there too: a factor a and a floor b per task
(``sqrt((a * std)^2 + b^2)``) fitted on the validation split (:mod:`fm_engine.calibration`), stored in the
checkpoint (``ensemble.std_factors``) and the card, with their test figures (coverage of mean +/- 1 and 2 std
before and after, rank correlation of |error| and std).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from fm_engine.calibration import TaskCalibration, calibrate_task
from fm_engine.cards import EnsembleRecord, FinetuneRecord, decision_fields
from fm_engine.checkpoints import LoadedCheckpoint, load_checkpoint, save_checkpoint
from fm_engine.config import read_config_file
from fm_engine.run_lock import hold_run, is_rank_zero, own_identity
from fm_engine.safe_io import atomic_write_text
from fm_engine.tasks import TaskType
from fm_engine.training.config import EnsembleConfig, TrainConfig
from fm_engine.training.evaluate import (
    CARD_BOOTSTRAP_RESAMPLES,
    choose_decision_thresholds,
    ensemble_outputs,
    evaluate,
)
from fm_engine.training.member_processes import member_jobs, train_side_by_side
from fm_engine.training.run_files import RunDirectory, WallClock, now_iso

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fm_engine.cards import ModelCard
    from fm_engine.models import FlexibleMultiTaskModel
    from fm_engine.thresholds import ThresholdChoice
    from fm_engine.training.evaluate import StageEvaluation, StageOutputs
    from fm_engine.training.trainer import FinetuneSpec, TrainResult

MEMBERS_FOLDER = "members"  # run/members/member_<k>/: each member's run folder


def is_ensemble_run(config: TrainConfig | None, run_dir: str | Path, *, resume: bool) -> bool:
    """True when ``train`` is asked for an ensemble: a config of two or more members, or (``resume``) a run folder
    holding members."""
    if resume:
        return (Path(run_dir) / MEMBERS_FOLDER).is_dir()
    return config is not None and config.ensemble.members > 1


def member_folder(run_dir: str | Path, index: int) -> Path:
    """Member ``index``'s run folder inside the ensemble's run folder."""
    return Path(run_dir) / MEMBERS_FOLDER / f"member_{index}"


def member_configs(config: TrainConfig) -> list[TrainConfig]:
    """Each member's training config: the run's with the member's seed, the run's split seed fixed (one split for
    all), and no ensemble section."""
    split_seed = config.data.split_seed if config.data.split_seed is not None else config.seed
    members = []
    for seed in config.ensemble.member_seeds(config.seed):
        member = copy.deepcopy(config)
        member.seed = seed
        member.data.split_seed = split_seed
        member.ensemble = EnsembleConfig()
        members.append(member)
    return members


def check_ensemble(config: TrainConfig) -> None:
    """Refuse settings an ensemble cannot train with, before anything is written."""
    trainer = config.trainer
    if trainer.devices > 1 or trainer.num_nodes > 1:
        raise ValueError(
            f"ensemble.members: each of the {config.ensemble.members} members trains in one process; "
            f"trainer.devices ({trainer.devices}) and trainer.num_nodes ({trainer.num_nodes}) must be 1"
        )


def train_ensemble(
    config: TrainConfig | None, run_dir: str | Path, *, resume: bool = False, progress_bar: bool | None = None
) -> TrainResult:
    """Train ``config.ensemble.members`` members into ``run_dir`` (side by side or one after another, see the module
    docstring) and save the ensemble's checkpoint; returns a ``TrainResult`` (``cancelled`` when a member was)."""
    run = RunDirectory(run_dir)
    if not is_rank_zero():
        raise ValueError("ensemble.members: an ensemble trains in one process (no DDP)")
    with hold_run(run.path):
        clock = WallClock()
        if resume:
            config = TrainConfig.from_record(read_config_file(run.config_path), anchor=run.path)
            clock.previous_s = float(run.read_status().get("wall_time_s") or 0.0)
        else:
            assert config is not None
            _new_run_folder(run, config, resume_hint=" or use --resume")
        check_ensemble(config)
        created = run.read_status().get("created_at") or now_iso()
        run.update_status(state="running", **own_identity(), created_at=created, name=config.name, finished_at=None,
                          members=config.ensemble.members, message="training the ensemble's members")  # fmt: skip
        return _ending_on_error(run, clock, lambda: _train_members(config, run, clock=clock, progress_bar=progress_bar))


def finetune_ensemble(
    config: TrainConfig,
    run_dir: str | Path,
    finetunes: Sequence[FinetuneSpec],
    *,
    before: dict[str, dict[str, float]],
    progress_bar: bool | None = None,
) -> TrainResult:
    """``fm finetune`` on an ensemble: retrain the named heads of every member (``finetunes[k]`` holds member k's
    model, encoder frozen) with the member's own seed, on the ensemble's one split, into ``run_dir``'s member
    folders; then score, calibrate and save the new ensemble as :func:`train_ensemble` does. The card's fine-tune
    record sets ``before`` (the source ensemble's test metrics, task -> metric -> value) beside the new ensemble's.
    No ``--resume``, as for one model."""
    run = RunDirectory(run_dir)
    if len(finetunes) != config.ensemble.members:
        raise ValueError(f"ensemble.members: {config.ensemble.members}, but {len(finetunes)} members to fine-tune")
    with hold_run(run.path):
        _new_run_folder(run, config, resume_hint="")
        clock = WallClock()
        run.update_status(state="running", **own_identity(), created_at=now_iso(), name=config.name, kind="finetune",
                          members=config.ensemble.members, message="fine-tuning the ensemble's members")  # fmt: skip
        return _ending_on_error(run, clock, lambda: _train_members(config, run, clock=clock, progress_bar=progress_bar,
                                                                   finetunes=finetunes, before=before))  # fmt: skip


def _new_run_folder(run: RunDirectory, config: TrainConfig, *, resume_hint: str) -> None:
    """Check ``config``, refuse a folder that already holds a run (``resume_hint`` ends the message), and write the
    run's ``config.yaml``."""
    check_ensemble(config)
    if run.checkpoint_path.exists() or (run.path / MEMBERS_FOLDER).exists():
        raise ValueError(f"{run.path} already holds a run; choose another --out{resume_hint}")
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def _ending_on_error(run: RunDirectory, clock: WallClock, train_members: Callable[[], TrainResult]) -> TrainResult:
    """``train_members()``; when it raises, the run's status says how it ended (cancelled on Ctrl-C / SIGTERM, else
    failed, with the error) before the error goes on."""
    try:
        return train_members()
    except BaseException as error:
        state = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
        run.update_status(state=state, finished_at=now_iso(), message=f"{type(error).__name__}: {error}",
                          wall_time_s=round(clock.total(), 2))  # fmt: skip
        raise


def _train_members(
    config: TrainConfig,
    run: RunDirectory,
    *,
    clock: WallClock,
    progress_bar: bool | None,
    finetunes: Sequence[FinetuneSpec] | None = None,
    before: dict[str, dict[str, float]] | None = None,
) -> TrainResult:
    from fm_engine.training.trainer import TrainResult, train

    configs = member_configs(config)
    jobs = member_jobs(configs, lambda index: member_folder(run.path, index))
    parallel = config.ensemble.processes() if finetunes is None else 1  # fine-tunes hold their models in memory
    if parallel > 1:
        most = [int(run.read_status().get("most_at_once") or 0)]  # the most members training at once so far

        def training(members: list[int]) -> None:
            if members:
                most[0] = max(most[0], len(members))
                shown = ", ".join(str(k + 1) for k in members)
                run.update_status(member=members[0], training=members, most_at_once=most[0],
                                  wall_time_s=round(clock.total(), 2),
                                  message=f"members {shown} of {len(configs)} training side by side")  # fmt: skip

        show_bar = config.trainer.progress_bar if progress_bar is None else progress_bar
        if train_side_by_side(jobs, parallel=parallel, status=training, progress_bar=show_bar) != "done":
            run.update_status(state="cancelled", finished_at=now_iso(), wall_time_s=round(clock.total(), 2),
                              message=f"cancelled while training {len(configs)} members side by side")  # fmt: skip
            return TrainResult("cancelled", run.path, None, None, 0, clock.total())
        jobs = []
    for job in jobs:
        run.update_status(member=job.index, message=f"member {job.index + 1} of {len(configs)} (seed "
                          f"{job.config.seed})", wall_time_s=round(clock.total(), 2))  # fmt: skip
        if finetunes is not None:
            result = train(job.config, job.folder, finetune=finetunes[job.index], progress_bar=progress_bar)
        else:
            result = train(None if job.resume else job.config, job.folder, resume=job.resume,
                           progress_bar=progress_bar)  # fmt: skip
        if result.state != "done":
            run.update_status(state="cancelled", finished_at=now_iso(), wall_time_s=round(clock.total(), 2),
                              message=f"cancelled during member {job.index + 1} of {len(configs)}")  # fmt: skip
            return TrainResult("cancelled", run.path, None, None, result.epochs, clock.total())
    run.update_status(message="scoring the ensemble", wall_time_s=round(clock.total(), 2))
    source = (
        FinetuneRecord(finetunes[0].source_checkpoint_id, list(finetunes[0].tasks), "", before or {})
        if finetunes
        else None
    )
    checkpoint, test, epochs = assemble_ensemble(config, run, seconds=clock.total, finetune=source)
    seconds = clock.total()
    run.update_status(state="done", finished_at=now_iso(), eta_seconds=0, wall_time_s=round(seconds, 2),
                      message=f"done in {seconds:.0f} s; {len(configs)} members",
                      test_metrics=test.metrics)  # fmt: skip
    return TrainResult("done", run.path, checkpoint, test, epochs, seconds)


def assemble_ensemble(
    config: TrainConfig, run: RunDirectory, *, seconds: Callable[[], float], finetune: FinetuneRecord | None = None
) -> tuple[Path, StageEvaluation, int]:
    """Score the finished members of ``run`` together and save the ensemble checkpoint into ``run/checkpoint``;
    returns its path, the ensemble's test evaluation and the members' epochs together. ``seconds()``: the run's
    wall time so far; ``finetune``: for members fine-tuned from an ensemble, its id, retrained heads and test metrics
    (the card's record gets the new ensemble's test metrics as "after" and member 0's wording of what was frozen)."""
    from fm_engine.training.trainer import read_model_config, recorded_datamodule, training_compositions

    folders = [member_folder(run.path, k) for k in range(config.ensemble.members)]
    checkpoints = [load_checkpoint(folder) for folder in folders]
    models = [checkpoint.model for checkpoint in checkpoints]
    lead_record = TrainConfig.from_record(read_config_file(folders[0] / "config.yaml"), anchor=folders[0])
    dm, _, _ = recorded_datamodule(lead_record, folders[0], read_model_config(folders[0] / "model_config.json"))
    validation, val_mean, val_std = ensemble_outputs(models, dm, "val")
    tested, test_mean, test_std = ensemble_outputs(models, dm, "test")
    calibration = calibrate_spread(lead_tasks(models[0]), (validation[0], val_mean, val_std),
                                   (tested[0], test_mean, test_std))  # fmt: skip
    member_metrics = [evaluate(m, dm, "test", collected=c).metrics for m, c in zip(models, tested, strict=True)]
    lead = copy.deepcopy(models[0])  # member 0's weights with the ensemble's decision thresholds
    thresholds = choose_decision_thresholds(lead, dm, stage="val", collected=validation[0], physical=val_mean)
    val = evaluate(lead, dm, "val", collected=validation[0], physical=val_mean)
    test = evaluate(lead, dm, "test", collected=tested[0], physical=test_mean, n_bootstrap=CARD_BOOTSTRAP_RESAMPLES)
    card = ensemble_card(config, checkpoints, member_metrics, val=val.metrics, test=test.metrics,
                         intervals=test.intervals, thresholds=thresholds, lead=lead, seconds=seconds(),
                         calibration=calibration)  # fmt: skip
    if finetune is not None:
        frozen = card.finetune.frozen if card.finetune is not None else ""
        card.finetune = dataclasses.replace(finetune, frozen=frozen, test_metrics_after=test.metrics)
    with_data = [name for name in lead.tasks if name in dm.masks]
    path = save_checkpoint(lead, run.checkpoint_path, card=card, compositions=training_compositions(dm, with_data),
                           members=models[1:], std_factors={t: c.scale for t, c in calibration.items()})  # fmt: skip
    epochs = sum(int(c.card.training.epochs_run or 0) for c in checkpoints if c.card is not None)
    return path, test, epochs


def lead_tasks(model: FlexibleMultiTaskModel) -> list[str]:
    """The tasks whose spread is calibrated: regression and sequence (curve) tasks."""
    return [name for name, task in model.tasks.items() if task.type is not TaskType.CLASSIFICATION]


def calibrate_spread(
    tasks: list[str],
    validation: tuple[StageOutputs, Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
    test: tuple[StageOutputs, Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
) -> dict[str, TaskCalibration]:
    """Per task of ``tasks`` with validation rows, the spread's (a, b) fitted on ``validation`` = (member 0's
    outputs with the truths, the ensemble means, the members' standard deviations) and its test figures from
    ``test`` (the same on the test split); see :mod:`fm_engine.calibration`. The test split never changes
    them."""
    out: dict[str, TaskCalibration] = {}
    for name in tasks:
        if name not in validation[0].targets:
            continue  # no validation rows (a head carried frozen): a = 1, b = 0
        val = (validation[0].targets[name].numpy(), validation[1][name], validation[2][name])
        tested = (test[0].targets[name].numpy(), test[1][name], test[2][name]) if name in test[0].targets else None
        out[name] = calibrate_task(val, tested)
    return out


def mean_metrics(per_member: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Task -> metric -> the mean over the members of their own test metric (``n`` kept as is; a metric a member
    lacks, or NaN for every member, is left out)."""
    out: dict[str, dict[str, float]] = {}
    for task, metrics in per_member[0].items():
        for key in metrics:
            values = np.array([m.get(task, {}).get(key, np.nan) for m in per_member], dtype=np.float64)
            if np.isfinite(values).any():
                out.setdefault(task, {})[key] = float(np.nanmean(values))
    return out


def ensemble_card(
    config: TrainConfig,
    checkpoints: list[LoadedCheckpoint],
    member_metrics: list[dict[str, dict[str, float]]],
    *,
    val: dict[str, dict[str, float]],
    test: dict[str, dict[str, float]],
    intervals: dict[str, dict[str, list[float]]],
    thresholds: Mapping[str, ThresholdChoice | None],
    lead: FlexibleMultiTaskModel,
    seconds: float,
    calibration: Mapping[str, TaskCalibration] | None = None,
) -> ModelCard:
    """The ensemble's card: member 0's card (data, split, start, training record) with the ensemble mean's
    metrics and decision thresholds, the run's config (with its ``ensemble`` section) and the ensemble record
    (with the spread's ``calibration``)."""
    base = checkpoints[0].card
    if base is None:
        raise ValueError(f"{checkpoints[0].path}: member 0 has no readable model card ({checkpoints[0].card_problem})")
    tasks = [
        dataclasses.replace(task, test_metrics=test.get(task.name, {}), test_metrics_ci95=intervals.get(task.name, {}),
                            val_metrics=val.get(task.name, {}), **decision_fields(lead, task.name, thresholds))
        if task.name in test or task.name in val else task
        for task in base.tasks
    ]  # fmt: skip
    recorded = dict(base.config)  # member 0's config as it ran (settings left to the data size resolved)
    recorded |= {"seed": config.seed, "ensemble": dataclasses.asdict(config.ensemble)}
    recorded["data"] = dict(recorded.get("data") or {}) | {"split_seed": config.data.split_seed}
    cards = [c.card for c in checkpoints]
    record = EnsembleRecord(
        members=len(checkpoints),
        seeds=config.ensemble.member_seeds(config.seed),
        member_checkpoint_ids=[c.checkpoint_id for c in checkpoints],
        member_epochs=[int(c.training.epochs_run or 0) if c is not None else 0 for c in cards],
        member_seconds=[float(c.training.wall_time_s or 0.0) if c is not None else 0.0 for c in cards],
        member_test_metrics=member_metrics,
        mean_member_test_metrics=mean_metrics(member_metrics),
        calibration=dict(calibration or {}),
    )
    training = dataclasses.replace(base.training, wall_time_s=round(seconds, 2))
    return dataclasses.replace(base, tasks=tasks, config=recorded, seed=config.seed, training=training,
                               ensemble=record, created=now_iso())  # fmt: skip
