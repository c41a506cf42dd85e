"""Scaling-law runs: retrain with one task's training data thinned by ``task_masking_ratio`` and report
every task's validation and test error per ratio (``fm scaling``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd

from fm_engine.cards import read_card
from fm_engine.plots.files import write_figure_html
from fm_engine.plots.scaling import scaling_figure
from fm_engine.run_lock import hold_run, own_identity
from fm_engine.safe_io import atomic_path, atomic_write_json
from fm_engine.training.config import TrainConfig
from fm_engine.training.metrics import ERROR_METRICS, task_error
from fm_engine.training.run_files import RunDirectory, now_iso
from fm_engine.training.trainer import train


def run_scaling(
    config: TrainConfig, task: str, ratios: list[float], out: str | Path, *, progress_bar: bool = False
) -> pd.DataFrame:
    """One training run per ratio into ``out/ratio_<r>``; returns the long table of errors
    (columns: ratio, task, unit, metric, n_train, val_error, test_error) and writes scaling.csv/.html and
    scaling.json (the thinned task and the ratios), each atomically, and status.json (``kind: scaling``: the ratio in
    training, ``current_run``; done / cancelled / failed) for the workbench's monitor. ``out`` is locked for this
    process (run_lock). A cancelled run ends the study (an empty table; the finished ratios' runs are kept)."""
    names = [spec.name for spec in config.task_specs()]
    if task not in names:
        raise ValueError(f"unknown task '{task}' (tasks: {', '.join(names)})")
    if not ratios or any(not 0 < r <= 1 for r in ratios):
        raise ValueError("ratios must be numbers in (0, 1]")
    with hold_run(out):
        return _run_scaling(config, task, ratios, out, progress_bar=progress_bar)


def _run_scaling(
    config: TrainConfig, task: str, ratios: list[float], out: str | Path, *, progress_bar: bool
) -> pd.DataFrame:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    about = {"task": task, "ratios": sorted(set(ratios), reverse=True), "name": config.name}
    atomic_write_json(out / "scaling.json", about, sort_keys=False)
    top, total = RunDirectory(out), len(about["ratios"])
    top.update_status(kind="scaling", state="running", **own_identity(), name=config.name, task=task, step=0,
                      n_steps=total, created_at=top.read_status().get("created_at") or now_iso(), finished_at=None,
                      message=f"training {total} models, one per keep-ratio of {task}'s training data")  # fmt: skip
    try:
        table = _train_ratios(config, task, about["ratios"], out, top, progress_bar=progress_bar)
    except BaseException as error:
        state = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
        top.update_status(state=state, finished_at=now_iso(), message=f"{type(error).__name__}: {error}")
        raise
    if table is None:
        top.update_status(state="cancelled", finished_at=now_iso(), message="cancelled; the finished ratios are kept")
        return pd.DataFrame()
    top.update_status(state="done", finished_at=now_iso(), message=f"done: {total} ratios; see scaling.csv")
    return table


def _train_ratios(
    config: TrainConfig, task: str, ratios: list[float], out: Path, top: RunDirectory, *, progress_bar: bool
) -> pd.DataFrame | None:
    """One run per ratio (``top``: the study's status.json, told which ratio trains), then scaling.csv/.html; None
    when a run was cancelled (the later ratios are not trained)."""
    rows = []
    for step, ratio in enumerate(ratios, start=1):
        run_config = copy.deepcopy(config)
        run_config.tasks = [
            {**entry, "task_masking_ratio": ratio} if _entry_name(entry) == task else entry for entry in config.tasks
        ]
        top.update_status(step=step, current_run=f"ratio_{ratio:g}", message=f"ratio {step} / {len(ratios)}: "
                          f"training on {ratio:.0%} of {task}'s training data")  # fmt: skip
        result = train(run_config, out / f"ratio_{ratio:g}", progress_bar=progress_bar)
        if result.state != "done":
            return None
        card = read_card(result.checkpoint) if result.checkpoint else None
        for entry in card.tasks if card is not None else []:
            kind = entry.type
            rows.append({
                "ratio": ratio, "task": entry.name, "unit": entry.unit if kind != "classification" else "",
                "metric": ERROR_METRICS[kind], "n_train": entry.compositions["train_kept"],
                "val_error": task_error(entry.val_metrics, kind),
                "test_error": task_error(entry.test_metrics, kind),
            })  # fmt: skip
    table = pd.DataFrame(rows)
    with atomic_path(out / "scaling.csv") as staging:
        table.to_csv(staging, index=False, float_format="%.6g")
    write_figure_html(scaling_figure(table, task=task), out / "scaling.html")
    return table


def _entry_name(entry: dict[str, object]) -> str:
    return entry.get("name") or entry.get("bundled", "")
