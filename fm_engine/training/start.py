"""Where a run's encoder starts (``start_from``): scratch, the shipped foundation, or any checkpoint.

:func:`resolve_start` is the one place ``start_from`` is resolved (``auto``: the foundation when it is installed,
else scratch); it loads the start checkpoint before any data is read, so a bad path is one named error.
:func:`config_for_start` gives the run's config with the start's descriptor, encoder and loss-balancer settings
(the start's settings win: its encoder weights only fit its own shape and inputs; where the run's config asked
for something else, a warning names both) and the resolved start recorded (``start_from`` + ``start_checkpoint_id``).
:func:`plan_start` builds the model and data of such a run: the start model (every weight, and whatever else the
checkpoint holds), heads added for the run's tasks (``add_task``), the start's heads kept (or dropped with
``finetune.keep_start_heads: false``) and trained on a fixed, seeded replay of the corpus they came from (the
rehearsal runner's replay mechanism: a fixed buffer of each earlier task's training rows, trained alongside the
new task's rows), or frozen when no corpus is found.

The replay rows are written to ``<run>/replay.parquet`` (``composition``, ``split`` = the corpus's own split, one
column per kept head, NaN where a row was not drawn for that head): the kept heads' task specs read it, so
``--resume`` and ``fm finetune`` rebuild the same data. Compositions of the run's own data are never replayed,
so the run's own split is the one a scratch run gets.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fm_engine.cards import StartRecord
from fm_engine.checkpoints import CheckpointError, LoadedCheckpoint, load_checkpoint
from fm_engine.config import read_text_file
from fm_engine.data import CompositionDataModule
from fm_engine.data.replay_mix import ReplayMix
from fm_engine.data.splits import sample_per_task_and_split
from fm_engine.data.tables import load_task_table
from fm_engine.foundation import REPLAY_FOLDER, foundation_checkpoint_path, foundation_installed
from fm_engine.models import AutoencoderConfig, EncoderConfig, FlexibleMultiTaskModel
from fm_engine.safe_io import atomic_path, atomic_write_json
from fm_engine.tasks import TaskSpec, TaskType
from fm_engine.training.config import START_AUTO, START_FOUNDATION, START_SCRATCH, TrainConfig
from fm_engine.training.head_start import RELATED_HEAD_MIN_CORRELATION, start_related_heads

CORPUS_TABLE = "corpus.parquet"  # THE CORPUS CONTRACT: <corpus folder>/corpus.parquet
REPLAY_FILE = "replay.parquet"


class StartError(ValueError):
    """A ``start_from`` that cannot be used (the message names the setting, the path and what was expected)."""


@dataclass
class ResolvedStart:
    """``start_from`` resolved: ``kind`` scratch, foundation or checkpoint, with the loaded start checkpoint."""

    requested: str
    kind: str
    checkpoint: LoadedCheckpoint | None = None

    @property
    def recorded(self) -> str:
        """What the run's config records: scratch, foundation, or the checkpoint folder's absolute path."""
        if self.checkpoint is None:
            return START_SCRATCH
        return START_FOUNDATION if self.kind == START_FOUNDATION else str(self.checkpoint.path.resolve())


def resolve_start(config: TrainConfig) -> ResolvedStart:
    """The one resolution of ``config.start_from`` (see the module docstring); :class:`StartError` for a missing
    foundation asked for by name, a path that is not a checkpoint, or a checkpoint whose id differs from
    ``config.start_checkpoint_id``."""
    value = config.start_from.strip()
    if value == START_SCRATCH or (value == START_AUTO and not foundation_installed()):
        return ResolvedStart(value, START_SCRATCH)
    if value in (START_AUTO, START_FOUNDATION):
        path, kind = foundation_checkpoint_path(), START_FOUNDATION
        if not foundation_installed():
            raise StartError(
                f"start_from: 'foundation': no foundation checkpoint is installed at {path} (build it with "
                "make foundation), expected start_from: scratch or a checkpoint folder"
            )
    else:
        path, kind = Path(value).expanduser(), "checkpoint"
        if not path.is_absolute():
            path = (config.data_base() / path).resolve()
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        raise StartError(f"start_from: {value!r}: {error}") from None
    if config.start_checkpoint_id and checkpoint.checkpoint_id != config.start_checkpoint_id:
        raise StartError(
            f"start_from: {value!r}: {checkpoint.path} is checkpoint {checkpoint.checkpoint_id}, but the config "
            f"asks for start_checkpoint_id {config.start_checkpoint_id} (remove start_checkpoint_id to start from "
            "this one)"
        )
    return ResolvedStart(value, kind, checkpoint)


def config_for_start(config: TrainConfig, start: ResolvedStart) -> tuple[TrainConfig, list[str]]:
    """A copy of ``config`` for a run from ``start``: the start's descriptor, encoder and loss balancer, the
    resolved start recorded; and notes naming every setting the start changed (a warning too where the config
    had asked for something other than the default)."""
    config = copy.deepcopy(config)
    config.start_from = start.recorded
    if start.checkpoint is None:
        config.start_checkpoint_id = ""
        return config, []
    config.start_checkpoint_id = start.checkpoint.checkpoint_id
    own = start.checkpoint.model.config
    notes = []
    for key, ours, theirs, default in (
        ("descriptor", config.descriptor.to_dict(), own.descriptor.to_dict(), type(config.descriptor)().to_dict()),
        ("model.encoder", config.model.encoder.to_dict(), own.encoder.to_dict(), EncoderConfig().to_dict()),
        ("model.loss_balancer", config.model.loss_balancer, own.loss_balancer, False),
    ):
        if ours != theirs:
            explicit = ours != default  # the config asked for something: warn, not only note
            if isinstance(ours, dict):
                changed = [k for k in theirs if ours.get(k) != theirs[k]]
                ours, theirs = ({k: d.get(k) for k in changed} for d in (ours, theirs))
            note = f"{key}: the start checkpoint's {theirs} is used instead of the config's {ours}"
            notes.append(note)
            if explicit:
                warnings.warn(f"{note} (a fine-tuned encoder keeps the start's shape and inputs)", stacklevel=2)
    config.descriptor = copy.deepcopy(own.descriptor)
    config.model.encoder = copy.deepcopy(own.encoder)
    config.model.loss_balancer = own.loss_balancer
    return config, notes


@dataclass
class StartPlan:
    """The model and data of a run that starts from a checkpoint, the start record for its card, and the
    tasks whose validation loss chooses the best epoch (the run's own tasks)."""

    model: FlexibleMultiTaskModel
    datamodule: CompositionDataModule
    record: StartRecord
    monitor_tasks: list[str]


def corpus_candidates(config: TrainConfig, kept: list[TaskSpec], start_dir: Path | None = None) -> list[Path]:
    """Corpus folders to replay from, in order: ``finetune.replay_corpus``; else the corpus sample shipped inside
    the start checkpoint (``<start>/replay``: the shipped foundation has one, so a fine-tune replays the same rows
    on every machine, whether or not the full corpus was built), the folders of the kept tasks' recorded
    ``corpus.parquet`` data files, then ``<workspace>/corpus``."""
    if config.finetune.replay_corpus:
        path = Path(config.finetune.replay_corpus).expanduser()
        return [path if path.is_absolute() else config.data_base() / path]
    from fm_engine.workspace import workspace_dir

    shipped = [Path(start_dir) / REPLAY_FOLDER] if start_dir is not None else []
    folders = [Path(f).parent for spec in kept for f in spec.data_files if Path(f).name == CORPUS_TABLE]
    return list(dict.fromkeys([*shipped, *folders, workspace_dir() / "corpus"]))


def find_corpus(
    config: TrainConfig, kept: list[TaskSpec], start_dir: Path | None = None
) -> tuple[Path | None, list[str]]:
    """The first corpus folder of :func:`corpus_candidates` whose table has a column for at least one kept head,
    and those heads (curve heads are never replayed: a corpus holds numbers); ``(None, [])`` if there is none. A
    ``finetune.replay_corpus`` that is not such a folder is a ``StartError``."""
    import pyarrow.parquet as pq

    names = [spec.name for spec in kept if spec.type is not TaskType.KERNEL_REGRESSION]
    for folder in corpus_candidates(config, kept, start_dir):
        table = folder / CORPUS_TABLE
        if not table.is_file() or not names:
            continue
        columns = set(pq.read_schema(table).names)
        present = [name for name in names if name in columns]
        if {"composition", "split"} <= columns and present:
            return folder, present
        if config.finetune.replay_corpus:
            raise StartError(f"finetune.replay_corpus: {table} has no column composition, split or of a kept head "
                             f"({', '.join(names)})")  # fmt: skip
    if config.finetune.replay_corpus and names:
        raise StartError(f"finetune.replay_corpus: {config.finetune.replay_corpus}: no {CORPUS_TABLE} there")
    return None, []


def replay_table(corpus: Path, kept: list[str], exclude: set[str], *, rows: int, seed: int) -> pd.DataFrame:
    """The replay rows of ``corpus``: per kept head and per corpus split, ``rows`` compositions labelled for it
    (a seeded draw, the same for every run with this seed), never one of ``exclude`` (the run's own
    compositions); a head's column is NaN on the rows drawn for other heads."""
    frame = pd.read_parquet(corpus / CORPUS_TABLE, columns=["composition", "split", *kept])
    usable = ~frame["composition"].isin(exclude).to_numpy()
    return sample_per_task_and_split(frame, kept, rows=rows, seed=seed, tag="replay", usable=usable)


def read_from_replay(spec: TaskSpec, path: Path) -> None:
    """Point a kept head's task spec (the model's own: its record in the run and the checkpoint) at its replay
    column of ``path`` with the corpus's split labels."""
    spec.data_files, spec.data_column, spec.composition_column = [str(path)], spec.name, "composition"
    spec.split_column, spec.task_masking_ratio, spec.predict_idx = "split", 1.0, None


def own_compositions(config: TrainConfig, specs: list[TaskSpec]) -> set[str]:
    """The canonical keys of the run's own data (never replayed)."""
    keys: set[str] = set()
    for spec in specs:
        keys.update(load_task_table(spec, allow_pickle=config.data.allow_pickle).keys)
    return keys


def set_autoencoder(model: FlexibleMultiTaskModel, settings: AutoencoderConfig) -> None:
    """Keep the start's autoencoder when ``settings`` match its own, else replace it by a new one (or none)."""
    if settings == model.config.autoencoder:
        return
    from fm_engine.models.heads import AutoencoderHead

    model.config.autoencoder = copy.deepcopy(settings)
    model.autoencoder = (
        AutoencoderHead(model.latent_dim, settings.hidden_dims, model.config.input_dim) if settings.enabled else None
    )


def freeze_heads(model: FlexibleMultiTaskModel, names: list[str]) -> None:
    """Keep these heads' weights fixed (kept heads without replay data; also when such a run resumes)."""
    for name in names:
        for parameter in model.heads[name].parameters():
            parameter.requires_grad_(False)


def replay_mix_of(config: TrainConfig) -> ReplayMix | None:
    """The epoch of a run from a checkpoint (``finetune.replay_per_row``; see :mod:`fm_engine.data.replay_mix`):
    the config's own tasks and a fresh draw of the replay; None for a run from scratch or with the setting off."""
    if not config.starts_from_checkpoint or config.finetune.replay_per_row is None:
        return None
    return ReplayMix(tuple(spec.name for spec in config.task_specs()), config.finetune.replay_per_row)


def plan_start(config: TrainConfig, start: ResolvedStart, run_path: Path, notes: list[str]) -> StartPlan:
    """The model and data of a run from ``start`` (``config`` from :func:`config_for_start`; see the module
    docstring). Data of the run's tasks is read here (twice for the run's own compositions: they are kept out
    of the replay)."""
    from fm_engine.training.trainer import build_datamodule, fit_scalers, resolve_class_weights

    assert start.checkpoint is not None
    model = start.checkpoint.model
    model.train()
    specs = config.task_specs()
    own = {spec.name for spec in specs}
    replaced = [name for name in model.tasks if name in own]
    keep = config.finetune.keep_start_heads
    dropped = [name for name in model.tasks if name not in own] if not keep else []
    if replaced or dropped:
        model.remove_tasks(*replaced, *dropped)
    kept = list(model.tasks.values())
    start_dir = start.checkpoint.path
    wanted = kept and config.finetune.replay_rows > 0
    corpus, present = find_corpus(config, kept, start_dir) if wanted else (None, [])
    names = [spec.name for spec in kept]
    if corpus is not None:
        split_seed = config.data.split_seed if config.data.split_seed is not None else config.seed
        replay = replay_table(corpus, present, own_compositions(config, specs), rows=config.finetune.replay_rows,
                              seed=split_seed)  # fmt: skip  # part of the split: one for an ensemble's members
    else:
        replay = pd.DataFrame({"composition": pd.Series(dtype=str), "split": pd.Series(dtype=str)})
    for name in names:
        if name not in replay.columns:
            replay[name] = pd.Series(np.nan, index=replay.index, dtype="float64")
    replay_path = Path(run_path).resolve() / REPLAY_FILE
    with atomic_path(replay_path) as staging:  # read by the data module below, and by --resume
        replay.to_parquet(staging, index=False)
    # A kept head without replay rows (no corpus found) is carried frozen, without data in this run.
    frozen = [name for name in names if not replay[name].notna().any()]
    for spec in kept:
        read_from_replay(spec, replay_path)  # --resume and fm finetune read the same rows
    kept_specs = [spec for spec in kept if spec.name not in frozen]
    # the model's head order: the start's, then the run's
    dm = build_datamodule(config, kept_specs + specs, replay_mix=replay_mix_of(config))
    dm.setup()
    resolve_class_weights(dm)
    scalers = fit_scalers(dm, tasks=list(own))
    for spec in dm.tasks[len(kept_specs) :]:
        model.add_task(copy.deepcopy(spec), scalers[spec.name])
    if config.finetune.related_head_start:
        own_rows = {spec.name: np.flatnonzero(dm.train_keep[spec.name]) for spec in dm.tasks[len(kept_specs) :]
                    if spec.type is TaskType.REGRESSION}  # fmt: skip
        started = start_related_heads(
            model, x=dm.x, targets={name: (rows, dm.values[name][rows]) for name, rows in own_rows.items()},
            kept=names, min_correlation=RELATED_HEAD_MIN_CORRELATION,
        )  # fmt: skip
        notes = [*notes, *(head.text() for head in started)]
    set_autoencoder(model, config.model.autoencoder)
    trained_rows = {spec.name: int(dm.train_keep[spec.name].sum()) for spec in kept_specs}
    freeze_heads(model, frozen)
    if frozen:
        looked = ", ".join(str(p) for p in corpus_candidates(config, kept, start_dir))
        if not config.finetune.replay_rows:
            why = "finetune.replay_rows is 0"
        elif corpus is None:
            why = f"no corpus with their columns found (looked in {looked})"
        else:
            why = f"{corpus} has no rows for them"
        notes = [*notes, f"{why}: the kept heads {', '.join(frozen)} were not trained"]
    record = StartRecord(
        kind=start.kind, requested=start.requested, path=str(start.checkpoint.path.resolve()),
        checkpoint_id=start.checkpoint.checkpoint_id, name=start.checkpoint.card.name if start.checkpoint.card else "",
        kept_heads=names, frozen_heads=frozen, dropped_heads=dropped, replaced_heads=replaced,
        replay_corpus=str(corpus.resolve()) if corpus is not None else "",
        replay_rows=trained_rows,
        encoder_lr_scale=config.finetune.encoder_lr_scale, freeze_encoder_epochs=config.finetune.freeze_encoder_epochs,
        freeze_norm_statistics=config.finetune.freeze_norm_statistics,
        kept_heads_lr_scale=config.finetune.kept_heads_lr_scale if kept_specs else None,
        notes=list(notes),
    )  # fmt: skip
    return StartPlan(model, dm, record, [spec.name for spec in specs])


def start_data_sources(start: ResolvedStart, record: StartRecord) -> dict[str, dict[str, str]]:
    """The kept heads' data sources for the card: the start card's (e.g. the corpus's provenance), with the
    replay file named."""
    card = start.checkpoint.card if start.checkpoint is not None else None
    sources = {}
    for name in record.kept_heads:
        source = dict(card.data_sources.get(name, {})) if card is not None else {}
        rows = record.replay_rows.get(name, 0)
        sources[name] = source | {"replay": f"{REPLAY_FILE} ({rows} training rows)" if rows else "none (frozen)"}
    return sources


START_FILE = "start.json"  # a run folder's start record (for the card of a resumed run)


def write_start_file(run_path: Path, record: StartRecord, sources: dict[str, dict[str, str]]) -> None:
    atomic_write_json(Path(run_path) / START_FILE, {"start": record.to_mapping(), "data_sources": sources})


def read_start_file(run_path: Path, config: TrainConfig) -> tuple[StartRecord | None, dict[str, dict[str, str]]]:
    """A resumed run's start record and kept heads' data sources: its ``start.json``; a run from scratch records
    only that (runs from before start_from existed: None)."""
    path = Path(run_path) / START_FILE
    if path.is_file():
        data = json.loads(read_text_file(path, what="start record"))
        return StartRecord.from_mapping(data["start"]), dict(data.get("data_sources") or {})
    if config.start_from == START_SCRATCH:
        return StartRecord(START_SCRATCH, START_SCRATCH), {}
    return None, {}
