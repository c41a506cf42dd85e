"""``fm-trainer``: the LightningCLI entry point (``fm-trainer fit --config config.yaml``).

For users who prefer LightningCLI to ``fm train``. The YAML has ``model:`` / ``data:`` / ``trainer:``
sections; ``model`` and ``data`` take ``class_path`` + ``init_args``::

    seed_everything: 42
    model:
      class_path: fm_engine.trainer_cli.FMLightningModel
      init_args: {encoder: {hidden_dims: [128, 64]}, lr: 0.002}
    data:
      class_path: fm_engine.trainer_cli.FMDataModule
      init_args:
        tasks: [{bundled: bulk_modulus}, {bundled: hea_phase, class_weights: balanced}]
    trainer: {max_epochs: 20, accelerator: cpu}
    export: {name: my-model}        # the fm_engine checkpoint written after ``fit``

Task entries are the task dicts of ``fm train`` (see :class:`fm_engine.tasks.TaskSpec`); relative
``data_files`` are resolved against the (last) config file's folder. The network is built in ``setup()``
from the data (tasks, descriptor size, target scalers fitted on the training split). Validation and test
metrics are computed in physical units on the datamodule's whole split (:func:`evaluate`) and logged as
``val/loss``, ``val/<task>/<metric>`` (``test/...``). After ``fit``, the best-validation weights are written
as a self-describing checkpoint with its model card to ``<trainer.default_root_dir>/checkpoint``, so
``fm predict --checkpoint <default_root_dir>`` and :func:`fm_engine.checkpoints.load_checkpoint` work on it.
Unknown keys anywhere in the config are errors.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
import time
import traceback
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from fm_engine.cards import build_card, format_metric
from fm_engine.checkpoints import save_checkpoint
from fm_engine.cli import describe_error
from fm_engine.config import from_mapping, one_line, read_config_file
from fm_engine.data import CompositionDataModule, TaskBatch
from fm_engine.descriptors import DescriptorSpec
from fm_engine.models import AutoencoderConfig, EncoderConfig, FlexibleMultiTaskModel, ModelConfig
from fm_engine.run_lock import acquire, release
from fm_engine.threads import configure_threads
from fm_engine.training.callbacks import EpochTimer
from fm_engine.training.config import (
    START_SCRATCH,
    DataSection,
    ModelSection,
    OptimizerSection,
    TrainConfig,
    TrainerSection,
    check_ema_decay,
)
from fm_engine.training.evaluate import StageEvaluation, evaluate, flat_metrics
from fm_engine.training.lightning import MultiTaskModule
from fm_engine.training.run_files import now_iso
from fm_engine.training.trainer import (
    build_model,
    check_resume_state,
    datamodule_options,
    evaluate_for_card,
    is_rank_zero,
    training_compositions,
)
from fm_engine.training.weights import AveragedWeights, BestWeights

MODEL_CONFIG_KEY = "fm_engine_model_config"
AVERAGE_KEY = "fm_engine_weight_average"


class FMDataModule(CompositionDataModule):
    """The composition-keyed multi-task DataModule, configured with plain YAML values.

    Args:
        tasks: task dicts as in ``fm train`` (TaskSpec keys), or ``{bundled: <task>, ...overrides}``.
        descriptor: descriptor settings (DescriptorSpec keys: kind, n_grids, sigma, ...); default KMD-1d.
        val_ratio: fraction of the compositions without a file split label used for validation.
        test_ratio: fraction of the compositions without a file split label used for testing.
        seed: seeds the split, the task_masking_ratio subsampling and the batch order.
        split_seed: seeds the split and the subsampling instead (default: seed).
        batch_size: training batch size.
        num_workers: DataLoader workers.
        base_dir: folder that relative data_files are resolved against (default: the config file's folder).
        allow_pickle: read pickled data_files (.pkl, .pd.xz, ...), which can run code: only for files you
            trust (``data.init_args.allow_pickle: true`` in the config you run, or ``--data.allow_pickle true``).

    The defaults are those of ``fm train``'s config sections (:class:`~fm_engine.training.config.DataSection`).
    """

    def __init__(
        self,
        tasks: list[dict[str, Any]],
        descriptor: dict[str, Any] | None = None,
        val_ratio: float = DataSection.val_ratio,
        test_ratio: float = DataSection.test_ratio,
        seed: int = TrainConfig.seed,
        split_seed: int | None = DataSection.split_seed,
        batch_size: int = DataSection.batch_size,
        num_workers: int = DataSection.num_workers,
        base_dir: str | None = None,
        allow_pickle: bool = DataSection.allow_pickle,
    ) -> None:
        data = DataSection(
            val_ratio=val_ratio, test_ratio=test_ratio, batch_size=batch_size, num_workers=num_workers,
            split_seed=split_seed, allow_pickle=allow_pickle,
        )  # fmt: skip
        self.train_config = TrainConfig(
            tasks=[dict(entry) if isinstance(entry, dict) else entry for entry in tasks],
            seed=seed,
            descriptor=DescriptorSpec.from_dict(dict(descriptor or {})),
            data=data,
            base_dir=str(Path(base_dir).resolve()) if base_dir else "",
        )
        super().__init__(self.train_config.task_specs(), **datamodule_options(self.train_config))


def _train_config(dm: CompositionDataModule, section: ModelSection, optimizer: OptimizerSection) -> TrainConfig:
    """The equivalent ``fm train`` config (recorded in the model card)."""
    if isinstance(dm, FMDataModule):
        base = dm.train_config
        return TrainConfig(tasks=base.tasks, seed=base.seed, descriptor=base.descriptor, data=base.data,
                           base_dir=base.base_dir, model=section, optimizer=optimizer,
                           start_from=START_SCRATCH)  # fmt: skip
    return TrainConfig(
        tasks=[task.to_dict() for task in dm.tasks],
        seed=dm.seed,
        descriptor=dm.descriptor.spec,
        data=DataSection(
            val_ratio=dm.val_ratio, test_ratio=dm.test_ratio, batch_size=dm.batch_size, split_seed=dm.split_seed
        ),
        model=section,
        optimizer=optimizer,
        start_from=START_SCRATCH,  # fm-trainer always trains from scratch
    )


class FMLightningModel(MultiTaskModule):
    """A :class:`FlexibleMultiTaskModel` built lazily from the datamodule in ``setup()``.

    Args:
        encoder: encoder settings (EncoderConfig keys: type, hidden_dims, norm, dropout, d_model, ...).
        autoencoder: autoencoder head settings (enabled, hidden_dims, loss_weight).
        loss_balancer: learnable per-task uncertainty weighting of the losses.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        ema_decay: average the weights (as ``trainer.ema_decay`` of ``fm train``): validation, the kept
            best weights and the exported checkpoint use the exponential moving average. None: off.

    The defaults are those of ``fm train``'s ``model``, ``optimizer`` and ``trainer`` sections.
    """

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        autoencoder: dict[str, Any] | None = None,
        loss_balancer: bool = ModelSection.loss_balancer,
        lr: float = OptimizerSection.lr,
        weight_decay: float = OptimizerSection.weight_decay,
        ema_decay: float | None = TrainerSection.ema_decay,
    ) -> None:
        super().__init__(None, lr=lr, weight_decay=weight_decay)  # type: ignore[arg-type]  # built in setup()
        check_ema_decay(ema_decay)
        self.ema_decay = ema_decay
        self.averaging = AveragedWeights(ema_decay)
        self.section = ModelSection(
            encoder=from_mapping(EncoderConfig, encoder, path="encoder"),
            autoencoder=from_mapping(AutoencoderConfig, autoencoder, path="autoencoder"),
            loss_balancer=bool(loss_balancer),
        )
        self.save_hyperparameters()

    @property
    def optimizer_section(self) -> OptimizerSection:
        return OptimizerSection(lr=self.lr, weight_decay=self.weight_decay)

    def datamodule(self) -> CompositionDataModule:
        dm = getattr(self.trainer, "datamodule", None)
        if not isinstance(dm, CompositionDataModule):
            raise ValueError("FMLightningModel needs an FMDataModule (or CompositionDataModule) as its data")
        return dm

    def setup(self, stage: str) -> None:
        if self.model is None:
            dm = self.datamodule()
            self.model = build_model(_train_config(dm, self.section, self.optimizer_section), dm)
        self.averaging.attach(self.model)

    def evaluated_model(self) -> FlexibleMultiTaskModel:
        """The weights that validation judges: the running average, or the trained model."""
        return self.averaging.judged(self.model)  # type: ignore[return-value]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.averaging.update(self.model)

    # A full pass over the split in physical units (the same numbers as ``fm train``) at each epoch end;
    # the per-batch steps only let Lightning run its loops.
    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        return None

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        return None

    def _log_evaluation(self, stage: str) -> StageEvaluation:
        evaluation = evaluate(self.evaluated_model(), self.datamodule(), stage)
        values = {k: float(v) for k, v in flat_metrics(evaluation).items() if v is not None and math.isfinite(v)}
        self.log_dict(values, batch_size=1, sync_dist=True)  # the same numbers on every rank
        return evaluation

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    # The network's shape travels with Lightning checkpoints, so ``load_from_checkpoint`` can rebuild it.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODEL_CONFIG_KEY] = self.model.config.to_dict()
        if self.averaging.average is not None:
            checkpoint[AVERAGE_KEY] = self.averaging.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.model is None and MODEL_CONFIG_KEY in checkpoint:
            self.model = FlexibleMultiTaskModel(ModelConfig.from_dict(checkpoint[MODEL_CONFIG_KEY]))
        self.averaging.load_state_dict(checkpoint.get(AVERAGE_KEY))


class FMCheckpointExport(L.Callback):
    """After ``fit``: restore the best-validation weights, evaluate train/val/test in physical units and
    write an fm_engine checkpoint (config.json, model.safetensors, card.json, card.md).

    Args:
        dirpath: checkpoint directory (default: ``<trainer.default_root_dir>/checkpoint``).
        name: model name shown in the model card.
        restore_best: export the weights of the epoch with the lowest ``val/loss`` (else the last epoch's).
    """

    def __init__(self, dirpath: str | None = None, name: str = "", restore_best: bool = True) -> None:
        self.dirpath = dirpath
        self.name = name
        self.restore_best = restore_best
        self.best = BestWeights()
        self.timer = EpochTimer()
        self.checkpoint: Path | None = None
        self._start = 0.0

    # best-epoch tracking survives ``fit --ckpt_path last.ckpt`` (resume)
    def state_dict(self) -> dict[str, Any]:
        return self.best.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best.load_state_dict(state_dict)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.timer.on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.timer.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.timer.on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        model = pl_module.evaluated_model() if isinstance(pl_module, FMLightningModel) else pl_module.model
        self.best.observe(float(loss), trainer.current_epoch, model)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not isinstance(pl_module, FMLightningModel):
            return
        model = pl_module.model
        if not (self.restore_best and self.best.restore(model)):
            pl_module.averaging.copy_to(model)  # the last epoch's weights (averaged, when averaging is on)
        dm = pl_module.datamodule()
        evaluations = evaluate_for_card(model, dm)
        config = _train_config(dm, pl_module.section, pl_module.optimizer_section)
        config.name = self.name
        config.trainer = _trainer_section(trainer, ema_decay=pl_module.ema_decay)
        stats = self.timer.stats(self.best)
        card = build_card(
            config=config, model=model, dm=dm, evaluations=evaluations, best_epoch=stats.best_epoch,
            best_val_loss=stats.best_loss, epoch_seconds=stats.epoch_seconds, samples_seen=stats.samples_seen,
            seconds=time.perf_counter() - self._start, epochs=trainer.current_epoch, created=now_iso(),
        )  # fmt: skip
        card.entry_point = "fm-trainer"
        path = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "checkpoint"
        self.checkpoint = save_checkpoint(model, path, card=card, compositions=training_compositions(dm))
        print(f"\ncheckpoint: {self.checkpoint}  (use: fm predict --checkpoint {self.checkpoint} ...)")
        for task in card.tasks:
            intervals = task.test_metrics_ci95
            shown = ", ".join(
                f"{k} {format_metric(v, intervals.get(k))}" for k, v in task.test_metrics.items() if k != "n"
            )
            unit = f" ({task.unit})" if task.unit else ""
            print(f"  test {task.name}{unit}: {shown or 'no test rows'}")
        print("  ([low, high]: 95 % bootstrap interval over the test compositions)")


def _trainer_section(trainer: L.Trainer, *, ema_decay: float | None = None) -> TrainerSection:
    early = trainer.early_stopping_callback
    max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else trainer.current_epoch
    devices, nodes = trainer.num_devices, trainer.num_nodes
    return TrainerSection(
        max_epochs=max_epochs,
        patience=early.patience if early is not None else max_epochs,
        min_delta=abs(float(early.min_delta)) if early is not None else 0.0,
        accelerator="cpu" if isinstance(trainer.accelerator, CPUAccelerator) else "auto",
        devices=devices,
        num_nodes=nodes,
        strategy="auto" if devices * nodes == 1 else getattr(trainer.strategy, "strategy_name", "auto"),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        progress_bar=trainer.progress_bar_callback is not None,
        ema_decay=ema_decay,
    )


class OneLineParser(LightningArgumentParser):
    """jsonargparse's parser with its config errors as one line, as ``fm`` gives them (exit 2): the dotted key
    and what was expected (``model.lr: Expected a <class 'float'>. Got value: fast``), without the usage."""

    def error(self, message: str, ex: Exception | None = None) -> typing.NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        print(f"{self.prog.replace(' [options]', '')}: error: {short_parser_error(message)}", file=sys.stderr)
        self.exit(2)


CLASS_NAME = re.compile(r"<class '([^']+)'>")  # how jsonargparse names a type


def short_parser_error(message: str) -> str:
    """A jsonargparse error message on one line: the dotted key of a value of the wrong type and what was
    expected (``model.lr: Expected a float. Got value: fast``); other messages with their line breaks collapsed."""
    lines = [line.strip(" -") for line in str(message).splitlines() if line.strip(" -")]
    keys = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r'Parser key "([^"]+)"', line))]
    if not keys:
        return one_line(message)
    path = ".".join(key for _, key in keys)
    subtypes = next((line for line in lines if line.startswith("Subtypes: ")), "")
    given = next((line.removeprefix("Given value: ") for line in lines if line.startswith("Given value: ")), None)
    expected = next((line for line in lines[keys[-1][0] + 1 :] if line.startswith("Expected a")), None)
    if len(keys) == 1 and subtypes and given is not None:  # a value that fits none of the allowed kinds
        names = [name.rsplit(".", 1)[-1] for name in CLASS_NAME.findall(subtypes)]
        return f"{path}: expected {' or '.join(names)}, got {given}"
    if expected is not None:
        return path + ": " + CLASS_NAME.sub(r"\1", expected)
    return one_line(message)


class FMTrainerCLI(LightningCLI):
    """LightningCLI with the checkpoint export as an ``export:`` section and config-relative data paths.

    Subcommands: fit, validate, test (predictions: ``fm predict --checkpoint`` on the exported checkpoint).
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: keys for name, keys in LightningCLI.subcommands().items() if name != "predict"}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(FMCheckpointExport, "export")
        parser.set_defaults({"model": {"class_path": f"{__name__}.FMLightningModel"}})

    def _parse_ckpt_path(self) -> None:
        """Lightning reads ``--ckpt_path`` here first (weights_only): a crafted file gives one clear line
        naming it instead of an ``UnpicklingError`` traceback."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(os.fspath(ckpt_path)).is_file():
            check_resume_state(Path(os.fspath(ckpt_path)))
        super()._parse_ckpt_path()

    def _refuse_sections_that_are_not_mappings(self, config: Namespace) -> None:
        """jsonargparse lets ``trainer: 5`` through (or drops it silently when a ``--trainer.*`` option is
        given): refuse such a section by name, in the config files and in the parsed config."""
        paths = [Path(os.fspath(path)) for path in config.get("config") or []]
        sections = [read_config_file(path) for path in paths if path.is_file()] + [config]
        for data, section in itertools.product(sections, ("trainer", "export")):
            value = data.get(section)
            if value is not None and not isinstance(value, Namespace | dict):
                self._parser(self.subcommand).error(f"{section}: expected a mapping of settings, got {value!r}")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        self._refuse_sections_that_are_not_mappings(config)
        files = config.get("config") or []
        data = config.get("data")
        if not files or data is None or "init_args" not in data:
            return
        init_args = data["init_args"]
        if "base_dir" in init_args and not init_args["base_dir"]:
            init_args["base_dir"] = str(Path(os.fspath(files[-1])).resolve().parent)

    def before_fit(self) -> None:
        """Lock ``trainer.default_root_dir`` for this process (:mod:`fm_engine.run_lock`): a second
        ``fit`` into the same folder exits 2 before writing anything. Stale temps are not cleaned here:
        the folder may be a shared working directory."""
        if is_rank_zero():
            acquire(self.trainer.default_root_dir, clean=False)

    def after_fit(self) -> None:
        if is_rank_zero():
            release(self.trainer.default_root_dir)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as error:  # a bad task entry, unknown encoder key, ...: a config error
            self._parser(self.subcommand).error(str(error))


def main(args: Sequence[str] | None = None) -> int:
    """``fm-trainer {fit,validate,test} --config CONFIG.yaml [--section.key=value ...]``."""
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    try:
        configure_threads()  # torch threads and OpenMP waits (fm_engine.threads)
        FMTrainerCLI(
            FMLightningModel,
            FMDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "fm-trainer"},
            parser_class=OneLineParser,
            args=list(args) if args is not None else None,
        )
    except Exception as error:  # noqa: BLE001 - e.g. a missing data file or column, found while loading the data
        if os.environ.get("FM_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        message, code = describe_error(error)  # one line, as for fm; exit 2 (bad input) or 1 (unexpected)
        print(f"fm-trainer: error: {message}", file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    # ``python -m``: run the importable module's classes, so class_path fm_engine.trainer_cli.X matches them
    from fm_engine.trainer_cli import main as _main

    sys.exit(_main())
