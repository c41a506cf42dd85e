"""Continual rehearsal (``fm rehearsal``): learn tasks one after another with a small replay of earlier ones.

Step ``k`` adds task ``k``'s head to the model of step ``k-1`` (:meth:`FlexibleMultiTaskModel.add_task`) and
trains on all of task ``k``'s training rows plus a fixed replay buffer of each earlier task (``replay_ratio``
of its training rows, or ``replay_ratios[task]``). Every step is an ordinary run directory (live
``status.json`` / ``metrics.jsonl``, a checkpoint with a model card) and gets per-task predictions on the
validation and test splits. One composition-level split serves all steps, so a task's test compositions are
never trained on at any step. At the end: ``metrics.csv`` (every task's metrics after every step),
``forgetting.csv`` / ``forgetting.html`` (each task's test error vs step), ``SUMMARY.md``, ``checkpoint/``
(the final model) and, with a ``design`` table, an inverse design on the final checkpoint.
"""

from __future__ import annotations

import copy
import shutil
import sys
import threading
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd

from fm_engine.cards import CARD_FILE, CARD_MARKDOWN_FILE, METRIC_LABELS, ModelCard, read_card
from fm_engine.checkpoints import copy_checkpoint, load_checkpoint
from fm_engine.config import check_keys, check_value, known_keys_only, naming_file, read_config_file
from fm_engine.data import CompositionDataModule
from fm_engine.data.splits import subsample_keep_mask
from fm_engine.inverse import DesignConfig
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.plots.files import write_figure_html
from fm_engine.plots.rehearsal import forgetting_figure
from fm_engine.run_lock import hold_run, own_identity
from fm_engine.safe_io import atomic_path, atomic_write_json, atomic_write_text
from fm_engine.tasks import TaskSpec
from fm_engine.training.config import TrainConfig, recorded_config
from fm_engine.training.evaluate import prediction_frames
from fm_engine.training.metrics import ERROR_METRICS, task_error
from fm_engine.training.run_files import RunDirectory, now_iso
from fm_engine.training.trainer import (
    StartFrom,
    build_datamodule,
    fit_scalers,
    model_for,
    resolve_class_weights,
    train,
)

REHEARSAL_FILE = "rehearsal.json"
TRAIN_SECTIONS = ("name", "seed", "tasks", "descriptor", "model", "data", "optimizer", "trainer")
REHEARSAL_KEYS = ("replay_ratio", "replay_ratios", "design")
TASK_ENTRY_KEYS = (*TaskSpec.__dataclass_fields__, "bundled")  # a task entry: TaskSpec keys or a bundled task


@dataclass
class RehearsalConfig:
    """A rehearsal run: ``train.tasks`` in learning order, the replay sizes, an optional design.

    ``replay_ratio``: fraction in [0, 1] of each earlier task's training rows replayed at every later step
    (the same rows each time: a fixed buffer). ``replay_ratios``: per-task overrides. ``design``: the keys of
    an ``fm design`` config, run on the final checkpoint.
    """

    train: TrainConfig
    replay_ratio: float = 0.1
    replay_ratios: dict[str, float] = field(default_factory=dict)
    design: DesignConfig | None = None

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.train.task_specs()]
        if self.train.starts_from_checkpoint:
            raise ValueError(
                f"start_from: a rehearsal's first step starts from scratch, got {self.train.start_from!r} (fine-tune "
                "from a checkpoint with fm train)"
            )
        if len(names) < 2:
            raise ValueError("a rehearsal needs at least two tasks (learned one after another)")
        unknown = sorted(set(self.replay_ratios) - set(names))
        if unknown:
            raise ValueError(f"replay_ratios names unknown task(s): {', '.join(unknown)} (tasks: {', '.join(names)})")
        for name, ratio in {"replay_ratio": self.replay_ratio, **self.replay_ratios}.items():
            if not 0.0 <= float(ratio) <= 1.0:
                raise ValueError(f"{name}: the replay ratio must be in [0, 1], not {ratio}")
        if isinstance(self.design, dict):
            self.design = DesignConfig.from_dict(self.design)  # fail now, not after hours of training
        if self.design is not None:
            missing = sorted({t.task for t in self.design.targets} - set(names))
            if missing:
                raise ValueError(f"design targets name task(s) not in the rehearsal: {', '.join(missing)}")

    @property
    def task_names(self) -> list[str]:
        return [spec.name for spec in self.train.task_specs()]

    def replay_for(self, task: str) -> float:
        return float(self.replay_ratios.get(task, self.replay_ratio))

    def to_dict(self) -> dict[str, Any]:
        data = self.train.to_dict()
        data.update(replay_ratio=self.replay_ratio, replay_ratios=dict(self.replay_ratios))
        if self.design is not None:
            data["design"] = self.design.to_dict()
        return data

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, base_dir: str | Path | None = None, source: str = ""
    ) -> RehearsalConfig:
        """Build from a mapping; keys it does not know warn (with their name) and are ignored, because the
        same file may carry other tools' settings."""
        where = f"{source}: " if source else ""
        data = dict(data)
        base_dir = data.pop("base_dir", None) or base_dir  # as saved in rehearsal.json
        options, dropped = check_keys(data, (*TRAIN_SECTIONS, *REHEARSAL_KEYS), shared=True)
        train_part = {key: options.pop(key) for key in TRAIN_SECTIONS if key in options}
        known, inner = known_keys_only(TrainConfig, train_part)
        dropped += inner
        tasks = known.get("tasks")
        if not isinstance(tasks, list):
            raise ValueError(f"{where}'tasks' must be a list of task entries (e.g. [[tasks]] tables in TOML)")
        cleaned_tasks = []
        for index, entry in enumerate(tasks):
            if not isinstance(entry, dict):
                raise ValueError(f"{where}tasks[{index}] must be a table/mapping")
            entry, inner = check_keys(entry, TASK_ENTRY_KEYS, path=f"tasks[{index}]", shared=True)
            cleaned_tasks.append(entry)
            dropped += inner
        known["tasks"] = cleaned_tasks
        if options.get("design") is not None:
            if not isinstance(options["design"], dict):
                raise ValueError(f"{where}design: expected a mapping of design settings, got {options['design']!r:.60}")
            design, design_dropped = known_keys_only(DesignConfig, options["design"], path="design")
            options["design"] = DesignConfig.from_dict(design)
            dropped += design_dropped
        for key in dropped:
            warnings.warn(f"{where}ignoring unknown key '{key}' (not a rehearsal setting)", stacklevel=2)
        hints = typing.get_type_hints(cls)
        options = {key: check_value(value, hints[key], key) for key, value in options.items()}
        return cls(train=TrainConfig.from_dict(known, base_dir=base_dir), **options)

    @classmethod
    def from_file(cls, path: str | Path, *, recorded: bool = False) -> RehearsalConfig:
        """TOML (``.toml``) or YAML. ``recorded``: the file is a run folder's own ``rehearsal.json`` (for
        ``--resume``): its pickle opt-in is dropped and its paths resolve as in :func:`recorded_config`."""
        path = Path(path)
        data = read_config_file(path)
        if recorded:
            data = recorded_config(data, anchor=path.parent)
        with naming_file(path):
            return cls.from_dict(data, base_dir=path.parent, source=path.name)


@dataclass
class RehearsalResult:
    state: str  # done / cancelled
    out: Path
    metrics: pd.DataFrame
    forgetting: pd.DataFrame
    design_dir: Path | None = None


def step_dir_name(step: int, task: str) -> str:
    return f"step_{step}_{task}"


class _StatusMirror:
    """Copies the running step's epoch / ETA into the rehearsal's own status.json once a second."""

    def __init__(self, top: RunDirectory) -> None:
        self.top = top
        self._step: RunDirectory | None = None
        self._lock = threading.Lock()  # no mirrored write can land after follow() returns
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _StatusMirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.follow(None)
        self._stop.set()
        self._thread.join()

    def follow(self, step: RunDirectory | None) -> None:
        with self._lock:
            self._step = step

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self._step is None:
                    continue
                status = self._step.read_status()
                fields = {k: status[k] for k in ("epoch", "max_epochs", "eta_seconds", "best_epoch") if k in status}
                if fields:
                    self.top.update_status(**fields)


def _replay_buffers(dm: CompositionDataModule, config: RehearsalConfig) -> dict[str, np.ndarray]:
    """Each task's fixed replay rows: a seeded subset of its training rows (the same at every step)."""
    return {
        name: subsample_keep_mask(
            dm.train_keep[name], config.replay_for(name), seed=config.train.seed, task=f"{name}/replay"
        )  # fmt: skip
        for name in config.task_names
    }


def _step_metrics(card: ModelCard, step: int, task_added: str) -> list[dict[str, Any]]:
    rows = []
    for entry in card.tasks:
        unit = entry.unit if entry.type != "classification" else ""
        for split, metrics in (("val", entry.val_metrics), ("test", entry.test_metrics)):
            values = {ERROR_METRICS[entry.type]: task_error(metrics, entry.type)} | metrics
            for metric, value in values.items():
                if metric != "n":
                    rows.append({"step": step, "task_added": task_added, "task": entry.name, "type": entry.type,
                                 "split": split, "metric": metric, "value": value,
                                 "unit": unit if metric in ("mae", "rmse") else ""})  # fmt: skip
    return rows


def forgetting_table(metrics: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """One row per task: its headline test error after every step (empty before it was learned), the
    error right after learning it, the best and final errors, and ``forgetting = final - after_learning``
    (positive: the task got worse while later tasks were learned)."""
    rows = []
    n_steps = int(metrics["step"].max()) if len(metrics) else 0
    for name in tasks:
        own = metrics[(metrics["task"] == name) & (metrics["split"] == "test")]
        if own.empty:
            continue
        metric = ERROR_METRICS[own["type"].iloc[0]]
        series = own[own["metric"] == metric].set_index("step")["value"]
        row: dict[str, Any] = {"task": name, "metric": metric, "unit": own.loc[own["metric"] == metric, "unit"].iloc[0]}
        for step in range(1, n_steps + 1):
            row[f"step_{step}"] = series.get(step, np.nan)
        learned = series.dropna()
        row["after_learning"] = learned.iloc[0] if len(learned) else np.nan
        row["best"] = learned.min() if len(learned) else np.nan
        row["final"] = learned.iloc[-1] if len(learned) else np.nan
        row["forgetting"] = row["final"] - row["after_learning"]
        rows.append(row)
    return pd.DataFrame(rows)


def _forgetting_cell(value: Any) -> str:
    """A cell of SUMMARY.md's forgetting table: a float to 4 significant digits, empty when NaN (the steps
    before the task was learned); the card's ``n/a`` would read as a missing measurement."""
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def summary_markdown(config: RehearsalConfig, steps: list[dict[str, Any]], forgetting: pd.DataFrame,
                     design_dir: Path | None) -> str:  # fmt: skip
    names = config.task_names
    lines = [f"# Continual rehearsal: {config.train.name or 'rehearsal'}", ""]
    lines += [f"Tasks learned in this order: {' -> '.join(names)}. Each step adds the next task's head and trains "
              "on its training rows plus a fixed replay buffer of every earlier task.", ""]  # fmt: skip
    replay = ", ".join(f"{n} {config.replay_for(n):g}" for n in names[:-1])
    lines += [f"Replay ratios (fraction of a task's training rows replayed at later steps): {replay}.", ""]
    lines += ["## Steps", "", "| step | task added | training rows (new + replay) | epochs | seconds | checkpoint |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for step in steps:
        lines.append(f"| {step['step']} | {step['task']} | {step['train_rows']} | {step['epochs']} | "
                     f"{step['seconds']:.1f} | {step['run_dir']}/checkpoint |")  # fmt: skip
    step_columns = [c for c in forgetting.columns if c.startswith("step_")]
    lines += ["", "## Forgetting (test split, physical units; lower is better)", ""]
    lines += ["| task | metric | " + " | ".join(c.replace("_", " ") for c in step_columns) + " | forgetting |"]
    lines += ["|---|---|" + "---|" * (len(step_columns) + 1)]
    for _, row in forgetting.iterrows():
        metric = METRIC_LABELS[row["metric"]] + (f" ({row['unit']})" if row["unit"] else "")
        values = " | ".join(_forgetting_cell(row[c]) for c in step_columns)
        lines.append(f"| {row['task']} | {metric} | {values} | {_forgetting_cell(row['forgetting'])} |")
    lines += ["", "forgetting = final error - error right after the task was learned (positive: it got worse).", ""]
    lines += ["## Files", "", "- `metrics.csv`: every task's validation and test metrics after every step",
              "- `forgetting.csv`, `forgetting.html`: the table and plot above",
              "- `step_<k>_<task>/`: the step's run (status.json, metrics.jsonl, checkpoint/, predictions/*.parquet)",
              "- `checkpoint/`: the final model (all tasks)"]  # fmt: skip
    if design_dir is not None:
        lines += [f"- `{design_dir.name}/`: inverse design on the final checkpoint (see its SUMMARY.md)"]
    return "\n".join(lines) + "\n"


def run_rehearsal(
    config: RehearsalConfig, out: str | Path, *, resume: bool = False, progress_bar: bool = False
) -> RehearsalResult:
    """Run every step into ``out`` (see the module docstring). ``resume`` keeps the finished steps of an
    earlier, interrupted call and restarts from the first unfinished one. ``out`` is locked for this
    process (:mod:`fm_engine.run_lock`); each step's folder too, while it trains."""
    trainer = config.train.trainer
    if trainer.devices != 1 or trainer.num_nodes != 1:
        raise ValueError("fm rehearsal trains in one process (devices 1, num_nodes 1); use fm train for DDP")
    with hold_run(out):
        return _run_rehearsal(config, out, resume=resume, progress_bar=progress_bar)


def _run_rehearsal(config: RehearsalConfig, out: str | Path, *, resume: bool, progress_bar: bool) -> RehearsalResult:
    out = Path(out)
    top = RunDirectory(out)
    if (out / REHEARSAL_FILE).exists() and not resume:
        raise ValueError(f"{out} already holds a rehearsal; choose another --out or use --resume")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / REHEARSAL_FILE, config.to_dict())
    specs = config.train.task_specs()
    steps = [{"step": k, "task": s.name, "run_dir": step_dir_name(k, s.name), "state": "queued"}
             for k, s in enumerate(specs, start=1)]  # fmt: skip
    top.update_status(kind="rehearsal", state="queued", **own_identity(), name=config.train.name or "rehearsal",
                      created_at=top.read_status().get("created_at") or now_iso(), n_steps=len(specs), step=0,
                      steps=steps, message="loading data")  # fmt: skip
    try:
        return _run_steps(config, out, specs, steps, resume=resume, progress_bar=progress_bar)
    except BaseException as error:
        state = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
        top.update_status(state=state, finished_at=now_iso(), message=f"{type(error).__name__}: {error}")
        raise


def _run_steps(config: RehearsalConfig, out: Path, specs: list[TaskSpec], steps: list[dict[str, Any]], *,
               resume: bool, progress_bar: bool) -> RehearsalResult:  # fmt: skip
    top = RunDirectory(out)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    dm = build_datamodule(config.train, specs)
    dm.setup()
    resolve_class_weights(dm)
    scalers = fit_scalers(dm)
    own_rows = {name: keep.copy() for name, keep in dm.train_keep.items()}
    replay = _replay_buffers(dm, config)
    model: FlexibleMultiTaskModel | None = None
    rows: list[dict[str, Any]] = []
    with _StatusMirror(top) as mirror:
        for k, spec in enumerate(specs, start=1):
            step = steps[k - 1]
            run = RunDirectory(out / step["run_dir"])
            earlier = [s.name for s in specs[: k - 1]]
            keep = {spec.name: own_rows[spec.name]} | {name: replay[name] for name in earlier}
            dm.restrict_training(keep)
            step["train_rows"] = f"{int(own_rows[spec.name].sum())} + {sum(int(replay[n].sum()) for n in earlier)}"
            finished = run.checkpoint_path.joinpath("card.json").exists()
            if resume and finished:
                model = load_checkpoint(run.checkpoint_path).model
            else:
                if run.path.exists():
                    shutil.rmtree(run.path)  # an unfinished step starts again
                if model is None:
                    model = model_for(config.train, dm, [spec], scalers)
                else:
                    model.add_task(copy.deepcopy(spec), scalers[spec.name])
                step_config = copy.deepcopy(config.train)
                step_config.tasks = config.train.tasks[:k]
                step_config.name = f"{config.train.name or 'rehearsal'} step {k}: +{spec.name}"
                step["state"] = "running"
                top.update_status(state="running", step=k, current_run=step["run_dir"], steps=steps, epoch=0,
                                  message=f"step {k} / {len(specs)}: learning {spec.name} (replaying "
                                  f"{', '.join(earlier) or 'nothing'})")  # fmt: skip
                mirror.follow(run)
                if progress_bar:  # the console: one line per step above the step's epoch bar
                    print(f"step {k} / {len(specs)}: learning {spec.name} ({step['train_rows']} training rows, "
                          "new + replay)", file=sys.stderr, flush=True)  # fmt: skip
                monitor = [spec.name] + [name for name in earlier if replay[name].any()]
                result = train(step_config, run.path, progress_bar=progress_bar,
                               start=StartFrom(model, dm, monitor_tasks=monitor))  # fmt: skip
                mirror.follow(None)
                top.update_status(epoch=run.read_status().get("epoch", 0))
                if result.state != "done":
                    step["state"] = "cancelled"
                    top.update_status(state="cancelled", finished_at=now_iso(), steps=steps,
                                      message=f"cancelled in step {k}; continue with --resume")  # fmt: skip
                    return RehearsalResult("cancelled", out, pd.DataFrame(rows), pd.DataFrame())
                run.resume_path.unlink(missing_ok=True)  # steps restart whole; the step's checkpoint is kept
                (run.path / "predictions").mkdir(exist_ok=True)
                by_stage = [prediction_frames(model, dm, stage) for stage in ("val", "test")]
                for name in model.tasks:
                    frames = [stage_frames[name] for stage_frames in by_stage]
                    with atomic_path(run.path / "predictions" / f"{name}.parquet") as staging:
                        pd.concat(frames, ignore_index=True).to_parquet(staging)
            card = read_card(run.checkpoint_path)
            step.update(state="done", epochs=card.training.epochs_run, seconds=card.training.wall_time_s)
            rows += _step_metrics(card, k, spec.name)
            _write_tables(config, out, pd.DataFrame(rows))
            top.update_status(steps=steps)
    return _finish(config, out, steps, pd.DataFrame(rows))


def _write_tables(config: RehearsalConfig, out: Path, metrics: pd.DataFrame) -> pd.DataFrame:
    """metrics.csv, forgetting.csv and forgetting.html over the steps so far (rewritten after every step)."""
    forgetting = forgetting_table(metrics, config.task_names)
    for name, table in (("metrics.csv", metrics), ("forgetting.csv", forgetting)):
        with atomic_path(out / name) as staging:  # a reader never sees half a file
            table.to_csv(staging, index=False, float_format="%.6g")
    write_figure_html(forgetting_figure(forgetting), out / "forgetting.html")
    return forgetting


def _whole_training_time(checkpoint: Path, steps: list[dict[str, Any]]) -> None:
    """The final checkpoint's card (a copy of the last step's) with the training time of every step together
    (``training.wall_time_s``, s), not only the last step's."""
    card = read_card(checkpoint)
    seconds = [step.get("seconds") for step in steps]
    if card is None or any(not isinstance(value, int | float) for value in seconds):
        return
    card.training.wall_time_s = round(float(sum(seconds)), 2)
    atomic_write_json(checkpoint / CARD_FILE, card.to_mapping(), sort_keys=False)
    atomic_write_text(checkpoint / CARD_MARKDOWN_FILE, card.render_markdown())


def _finish(config: RehearsalConfig, out: Path, steps: list[dict[str, Any]], metrics: pd.DataFrame) -> RehearsalResult:
    top = RunDirectory(out)
    forgetting = _write_tables(config, out, metrics)
    copy_checkpoint(out / steps[-1]["run_dir"] / "checkpoint", out / "checkpoint")
    _whole_training_time(out / "checkpoint", steps)
    design_dir = None
    if config.design is not None:
        from fm_engine.inverse import run_design
        from fm_engine.inverse.report import write_design

        top.update_status(message="inverse design on the final checkpoint")
        checkpoint = load_checkpoint(out / "checkpoint")
        result = run_design(checkpoint, config.design)
        design_dir = write_design(result, checkpoint, out / "design")
    atomic_write_text(out / "SUMMARY.md", summary_markdown(config, steps, forgetting, design_dir))
    top.update_status(state="done", finished_at=now_iso(), eta_seconds=0, steps=steps,
                      message=f"done: {len(steps)} steps; see SUMMARY.md")  # fmt: skip
    return RehearsalResult("done", out, metrics, forgetting, design_dir)
