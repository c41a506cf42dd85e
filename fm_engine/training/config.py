"""The training config (``fm train --config CONFIG.yaml``): sections, defaults, strict keys."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from fm_engine.config import (
    DEFAULT_SEED,
    check_keys,
    check_range,
    check_seed,
    from_mapping,
    naming_file,
    read_config_file,
)
from fm_engine.data.recipe import Recipe
from fm_engine.data.settings import DataSection
from fm_engine.datasets import bundled_task
from fm_engine.descriptors import DescriptorSpec
from fm_engine.models import AutoencoderConfig, EncoderConfig
from fm_engine.tasks import TaskSpec, check_task_values


@dataclass
class ModelSection:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    loss_balancer: bool = False
    # z-score each descriptor feature with its training-split mean and standard deviation, inside the model
    # (stored in the checkpoint; see fm_engine.models.model): lets the encoder see minor-element differences
    standardise_inputs: bool = True


START_AUTO = "auto"  # the shipped foundation when it is installed, else scratch (see fm_engine.training.start)
START_FOUNDATION = "foundation"
START_SCRATCH = "scratch"


@dataclass
class FinetuneSection:
    """How a run whose encoder starts from a checkpoint (``start_from``: the foundation or a path) is trained; a
    run from scratch ignores this section. The defaults were chosen on validation rows inside matbench's training
    folds (``bench/finetune_recipe.py``: expt_gap and glass, against the settings varied one at a time): a slow
    encoder with the start's batch-norm statistics and slow kept heads scored best on both tasks and kept the
    start's heads closest to their metrics."""

    # Keep the start checkpoint's heads (e.g. the foundation's formation enthalpy), trained on a small replay of
    # the corpus they were trained on (kept frozen when no corpus is found); false: only the config's tasks.
    # Measured: dropping them (a lean model) was 2.5x faster but scored worse (expt_gap MAE +0.02 eV, glass
    # ROC-AUC -0.015): the replay also regularises the encoder.
    keep_start_heads: bool = True
    # Per kept head: corpus training compositions replayed at every epoch, and as many validation and test
    # compositions for its metrics (0: no replay, the kept heads stay frozen). 128 instead of 512 was faster but
    # let the kept heads drift (median test MAE x1.45 instead of x1.2) without helping the run's own task.
    replay_rows: int = 512
    # Replayed training rows drawn afresh at every epoch per training row of the run's own tasks (at most every
    # replayed row; see fm_engine.data.replay_mix): an epoch is one pass over the run's own rows, and the batch
    # size and schedule follow the rows it trains on. null: every replayed row at every epoch. Measured with
    # bench/small_data.py --validation (alloys / rows inside the training data): HEA yield-strength curves (50
    # alloys) MAE 157 MPa (1 per row: 156) against 173 with every replayed row at every epoch (a batch of 256
    # then held one alloy; runs stopped after 20-50 epochs); bulk modulus 300 / 1,000 rows unchanged (11.7 /
    # 10.0 GPa). From ~2,500 training rows of one's own on, every replayed row (~10,000) is trained on at every
    # epoch either way, so matbench-size fine-tunes are unchanged.
    replay_per_row: float | None = 4.0
    # The corpus folder of the replay; "": the corpus sample shipped in the start checkpoint (<start>/replay),
    # else the folder the start checkpoint's tasks were read from, else <workspace>/corpus.
    replay_corpus: str = ""
    # The encoder's learning rate is optimizer.lr times this (the run's new heads train at optimizer.lr).
    encoder_lr_scale: float = 0.1
    # The kept heads' learning rate is optimizer.lr times this (they are trained already; the replay is small).
    kept_heads_lr_scale: float = 0.1
    # Train only the heads (the encoder frozen: weights and norm statistics) for this many first epochs (5
    # measured no better than 0).
    freeze_encoder_epochs: int = 0
    # Keep the encoder's batch-norm statistics the start's (its weights still train): the fine-tuning batches
    # (the run's rows and the replay) differ from the data the start's statistics and heads were made on.
    freeze_norm_statistics: bool = True
    # Start each new regression head from a copy of the kept head whose output correlates best with the task's
    # training targets (|r| >= 0.5), rescaled to them (fm_engine.training.head_start); false: a fresh head.
    # Measured on matbench_expt_gap's validation rows inside the 5 training folds (seed 42): MAE 0.371 eV against
    # 0.382 with a fresh head (the head starts from mp_band_gap, r = 0.78), in fewer epochs.
    related_head_start: bool = True

    def __post_init__(self) -> None:
        check_range("finetune.replay_rows", self.replay_rows, low=0)
        check_range("finetune.replay_per_row", self.replay_per_row, low=0, low_open=True)
        check_range("finetune.encoder_lr_scale", self.encoder_lr_scale, low=0, low_open=True)
        check_range("finetune.kept_heads_lr_scale", self.kept_heads_lr_scale, low=0, low_open=True)
        check_range("finetune.freeze_encoder_epochs", self.freeze_encoder_epochs, low=0)


@dataclass
class OptimizerSection:
    lr: float = 2e-3
    weight_decay: float = 1e-5
    scheduler: Literal["cosine", "none"] = "cosine"  # cosine (decay to 1 % over max_epochs) or none

    def __post_init__(self) -> None:
        check_range("optimizer.lr", self.lr, low=0, low_open=True)
        check_range("optimizer.weight_decay", self.weight_decay, low=0)
        if self.scheduler not in ("cosine", "none"):
            raise ValueError(f"optimizer.scheduler: expected 'cosine' or 'none', got {self.scheduler!r}")


ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")


DEFAULT_EMA_DECAY = 0.999  # weight averaging (trainer.ema_decay), on by default


def check_ema_decay(decay: float | None, *, key: str = "ema_decay") -> None:
    """Refuse a weight-averaging decay outside (0, 1); None (averaging off) passes."""
    if decay is not None and not 0.0 < decay < 1.0:
        raise ValueError(f"{key} must be between 0 and 1 (exclusive), got {decay}")


@dataclass
class TrainerSection:
    # None ("auto"): chosen from the data size (fm_engine.data.recipe.auto_recipe), recorded as resolved
    max_epochs: int | None = None
    patience: int | None = None
    min_delta: float = 0.0
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    deterministic: bool = True
    progress_bar: bool = True
    resume_every_s: float = 10.0  # how often (wall time) last.ckpt is refreshed for --resume
    # Exponential moving average of the weights (per optimizer step); validation, early stopping and the saved
    # checkpoint then use the averaged weights. None: off. On by default since it measured better on small data
    # (bench/small_data.py) as on the demo.
    ema_decay: float | None = DEFAULT_EMA_DECAY

    def __post_init__(self) -> None:
        check_ema_decay(self.ema_decay, key="trainer.ema_decay")
        check_range("trainer.max_epochs", self.max_epochs, low=1)
        check_range("trainer.patience", self.patience, low=0)
        check_range("trainer.min_delta", self.min_delta, low=0)
        check_range("trainer.devices", self.devices, low=1)
        check_range("trainer.num_nodes", self.num_nodes, low=1)
        check_range("trainer.resume_every_s", self.resume_every_s, low=0, low_open=True)
        if self.accelerator not in ACCELERATORS:
            expected = ", ".join(ACCELERATORS)
            raise ValueError(f"trainer.accelerator: expected one of {expected}, got {self.accelerator!r}")
        if not str(self.strategy).strip():
            raise ValueError("trainer.strategy: expected a Lightning strategy name such as auto or ddp, got ''")

    def check_machine(self) -> None:
        """Refuse an accelerator this machine does not have (before any data loads)."""
        import torch

        if self.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"trainer.accelerator: {self.accelerator!r} asked for, but this machine has no GPU that torch can "
                "use; expected cpu or auto"
            )
        if self.accelerator == "mps" and not torch.backends.mps.is_available():
            raise ValueError("trainer.accelerator: 'mps' asked for, but this machine has no Apple GPU; expected cpu")
        if self.accelerator == "tpu":
            raise ValueError("trainer.accelerator: 'tpu' is not supported here; expected cpu, gpu or auto")


MAX_ENSEMBLE_MEMBERS = 64  # members train one after another: 64 tiny runs is already an hour


@dataclass
class EnsembleConfig:
    """An ensemble (``ensemble: {members: N}``, ``fm train --ensemble N``): N models trained one after another on
    one split (the run's, seeded by ``data.split_seed`` or else ``seed``), differing only in their seed (initial
    weights, batch order), saved as one checkpoint whose predictions are the members' mean with their standard
    deviation (``<task>_std``, in the task's unit). 1: a single model, exactly as without this section."""

    # How many models; 1: one model (no spread).
    members: int = 1
    # The members' seeds; []: ``seed``, ``seed + 1``, ... (member 0 is then the single model of this config).
    # Repeating a seed gives identical members (their spread is 0).
    seeds: list[int] = field(default_factory=list)
    # Members training at once, one process each (a member trains exactly as alone, bit for bit); 0: as many as
    # the machine's cores allow (cores / torch threads per training), at most the members; 1: one after another.
    parallel: int = 0

    def __post_init__(self) -> None:
        check_range("ensemble.members", self.members, low=1, high=MAX_ENSEMBLE_MEMBERS)
        check_range("ensemble.parallel", self.parallel, low=0, high=MAX_ENSEMBLE_MEMBERS)
        for index, seed in enumerate(self.seeds):
            check_seed(f"ensemble.seeds[{index}]", seed)
        if self.seeds and len(self.seeds) != self.members:
            raise ValueError(
                f"ensemble.seeds: expected one seed per member ({self.members}), got {len(self.seeds)} "
                f"({', '.join(map(str, self.seeds))}); leave it out for seed, seed + 1, ..."
            )

    def processes(self) -> int:
        """How many members train at once on this machine (``parallel``, or for 0 the cores available over the
        torch threads one training uses), at most ``members``."""
        if self.parallel:
            return min(self.parallel, self.members)
        from fm_engine.threads import training_threads

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(cores // training_threads(), self.members))

    def member_seeds(self, seed: int) -> list[int]:
        """Each member's training seed, for a run whose ``seed`` is ``seed``."""
        return list(self.seeds) if self.seeds else [seed + index for index in range(self.members)]


@dataclass
class TrainConfig:
    """A whole training run. ``tasks`` entries are task dicts (see :class:`TaskSpec`), or
    ``{"bundled": "<task>", ...overrides}`` for a bundled dataset task."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""
    seed: int = DEFAULT_SEED
    descriptor: DescriptorSpec = field(default_factory=DescriptorSpec)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    # Where the encoder starts: "auto" (the shipped foundation if installed, else scratch), "foundation",
    # "scratch", or a checkpoint / run folder (relative to the config's folder). A run records what it resolved to.
    start_from: str = START_AUTO
    # Set by a run to the id of the checkpoint it started from: rebuilding the run from its record then starts
    # from that very checkpoint (a different one is an error naming both ids); "": any.
    start_checkpoint_id: str = ""
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    base_dir: str = ""  # folder that relative data_files are resolved against (the config's folder)

    def __post_init__(self) -> None:
        if not self.tasks and not self.data.corpus:
            raise ValueError("tasks: the config names no tasks (expected a list of task entries, or data.corpus)")
        check_seed("seed", self.seed)
        if not isinstance(self.start_from, str) or not self.start_from.strip():
            raise ValueError(
                f"start_from: expected {START_AUTO}, {START_FOUNDATION}, {START_SCRATCH} or a checkpoint folder, "
                f"got {self.start_from!r}"
            )

    @property
    def starts_from_checkpoint(self) -> bool:
        """True for a run resolved (or recorded) to start from a checkpoint: a run folder's config records
        ``scratch``, ``foundation`` or the checkpoint's path (``auto`` is only ever resolved, never recorded)."""
        return self.start_from not in (START_AUTO, START_SCRATCH)

    def apply_recipe(self, recipe: Recipe) -> list[str]:
        """Fill the settings left to the data size (None: ``data.val_ratio``, ``data.batch_size``,
        ``trainer.max_epochs``, ``trainer.patience``) from ``recipe`` (the datamodule's, see
        :func:`fm_engine.data.recipe.auto_recipe`); returns the dotted keys filled."""
        filled = []
        for section, key in (("data", "val_ratio"), ("data", "batch_size"), ("trainer", "max_epochs"),
                             ("trainer", "patience")):  # fmt: skip
            if getattr(getattr(self, section), key) is None:
                setattr(getattr(self, section), key, getattr(recipe, key))
                filled.append(f"{section}.{key}")
        return filled

    def task_specs(self) -> list[TaskSpec]:
        """The task specs, relative ``data_files`` resolved against ``base_dir`` (see :func:`resolve_data_files`)."""
        if self.data.corpus:
            return self.corpus_task_specs()
        specs = []
        base = self.data_base()
        for index, entry in enumerate(self.tasks):
            if not isinstance(entry, dict):
                raise ValueError(f"tasks[{index}]: expected a mapping of task settings, got {entry!r}")
            entry = dict(entry)
            if "bundled" in entry:
                name = entry.pop("bundled")
                if not isinstance(name, str):
                    raise ValueError(f"tasks[{index}].bundled: expected a bundled task name, got {name!r}")
                check_keys(entry, TaskSpec.__dataclass_fields__, label=f"task '{name}'")
                entry = check_task_values(entry, path=f"tasks[{index}]")
                spec = bundled_task(name).spec(**entry)
            else:
                spec = resolve_data_files(TaskSpec.from_dict(entry, path=f"tasks[{index}]"), base)
            specs.append(spec)
        return specs

    def corpus_dir(self) -> Path | None:
        """The ``data.corpus`` folder, relative paths resolved against :meth:`data_base`; None without one."""
        if not self.data.corpus:
            return None
        path = Path(self.data.corpus).expanduser()
        return path if path.is_absolute() else (self.data_base() / path).resolve()

    def corpus_task_specs(self) -> list[TaskSpec]:
        """The corpus tasks trained on: every one (``tasks`` empty), or those named by ``{corpus: <task>,
        ...per-task model keys}`` entries, in the entries' order."""
        from fm_engine.foundation.corpus import CORPUS_FILE, read_tasks

        path = self.corpus_dir()
        assert path is not None
        tasks = {task.name: task for task in read_tasks(path)[0]}
        if not self.tasks:
            return [task.spec(path / CORPUS_FILE) for task in tasks.values()]
        specs = []
        for index, entry in enumerate(self.tasks):
            if not isinstance(entry, dict) or not isinstance(entry.get("corpus"), str):
                raise ValueError(
                    f"tasks[{index}]: with data.corpus, a task entry is {{corpus: <corpus task>, ...}} "
                    f"(e.g. a loss_weight), got {entry!r}"
                )
            entry = dict(entry)
            name = entry.pop("corpus")
            if name not in tasks:
                raise ValueError(f"tasks[{index}].corpus: '{name}' is not a task of {path} ({', '.join(tasks)})")
            check_keys(entry, MODEL_TASK_KEYS, label=f"corpus task '{name}'")
            spec = tasks[name].spec(path / CORPUS_FILE)
            for key, value in check_task_values(entry, path=f"tasks[{index}]").items():
                setattr(spec, key, value)
            spec.__post_init__()
            specs.append(spec)
        return specs

    def data_base(self) -> Path:
        """The folder relative ``data_files`` resolve against: ``base_dir``, or the working directory when a
        config built in Python has none (configs from a file or a record always have one)."""
        return Path(self.base_dir) if self.base_dir else Path.cwd()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["descriptor"] = self.descriptor.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base_dir: str | Path | None = None) -> TrainConfig:
        values = dict(data)
        if base_dir is not None and not values.get("base_dir"):
            values["base_dir"] = str(Path(base_dir).resolve())
        config = from_mapping(cls, values)
        config.task_specs()  # fail early on a bad task entry, naming it
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """The config a user runs directly: relative ``data_files`` resolve against the file's folder, and
        its ``data.allow_pickle`` is honoured."""
        path = Path(path)
        data = read_config_file(path)
        with naming_file(path):
            return cls.from_dict(data, base_dir=path.parent)

    @classmethod
    def from_record(cls, data: dict[str, Any], *, anchor: str | Path) -> TrainConfig:
        """A config recorded by an earlier run (a checkpoint's ``card.json``, a run folder's ``config.yaml``):
        see :func:`recorded_config`; the pickle opt-in is never taken from it."""
        return cls.from_dict(recorded_config(data, anchor=anchor))


MODEL_TASK_KEYS = ("loss_weight", "head_hidden_dims", "loss", "class_weights", "task_masking_ratio")
"""The per-task keys a ``{corpus: <task>}`` entry may set (the data keys come from the corpus)."""


def resolve_data_files(spec: TaskSpec, base: Path) -> TaskSpec:
    """``spec`` with its relative ``data_files`` made absolute against ``base`` (absolute ones unchanged)."""
    spec.data_files = [f if Path(f).is_absolute() else str((base / f).resolve()) for f in spec.data_files]
    return spec


def recorded_config(data: Any, *, anchor: str | Path) -> dict[str, Any]:
    """A config mapping recorded in a checkpoint or run folder, made safe to rebuild:

    * ``data.allow_pickle`` is dropped (a recorded opt-in is never honoured: whoever wrote the file is not
      the user running the command now);
    * ``base_dir`` becomes absolute: the recorded ``base_dir`` (the folder of the config the run was started
      from) if it is absolute, else resolved against ``anchor`` (the checkpoint or run folder holding the
      record); so relative ``data_files`` never depend on the working directory.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{anchor}: the recorded training config is not a mapping")
    values = dict(data)
    section = values.get("data")
    if isinstance(section, dict):
        values["data"] = {key: value for key, value in section.items() if key != "allow_pickle"}
    recorded = values.get("base_dir") or ""
    if not isinstance(recorded, str):
        raise ValueError(f"{anchor}: the recorded base_dir must be a folder path, not {recorded!r}")
    values["base_dir"] = str((Path(anchor).resolve() / recorded).resolve())
    return values


def demo_config() -> TrainConfig:
    """The built-in demo: AFLOW regression, glass and HEA-phase classification, yield strength vs T,
    plus the autoencoder and weight averaging; sized to train in about 80-95 s on 2 CPU cores."""
    tasks: list[dict[str, Any]] = [
        {"bundled": name} for name in ("bulk_modulus", "shear_modulus", "debye_temperature", "band_gap")
    ]
    tasks += [
        {"bundled": "glass_forming", "class_weights": "balanced"},
        {"bundled": "hea_phase", "class_weights": "balanced"},
        {"bundled": "yield_strength", "n_kernels": 6},
    ]
    return TrainConfig(  # the defaults, and only what differs from them
        name="demo",
        tasks=tasks,
        data=DataSection(batch_size=128),
        trainer=TrainerSection(max_epochs=180, patience=40),
        model=ModelSection(encoder=EncoderConfig(hidden_dims=[512, 256])),
    )


def pretrain_config(corpus: str | Path | None = None) -> TrainConfig:
    """The foundation's pretraining recipe (``fm pretrain`` without ``--config``): every task of ``corpus``
    (default :func:`fm_engine.foundation.corpus.default_corpus_dir`) with its split, large batches (one epoch
    over ~400k compositions is ~400 steps), a short cosine schedule and weight averaging."""
    from fm_engine.foundation.corpus import default_corpus_dir

    return TrainConfig(
        name="foundation",
        data=DataSection(batch_size=1024, corpus=str(corpus or default_corpus_dir())),
        optimizer=OptimizerSection(lr=2e-3),
        trainer=TrainerSection(max_epochs=30, patience=5, ema_decay=DEFAULT_EMA_DECAY),
        model=ModelSection(encoder=EncoderConfig(hidden_dims=[512, 256])),
    )
