"""Pure helpers of the Rehearsal & scaling page: find study folders, read them, and shape their tables.

A *rehearsal* folder (``fm rehearsal``) holds ``rehearsal.json``, ``status.json``, ``metrics.csv``,
``forgetting.csv``, ``SUMMARY.md`` and one run folder per step; a *scaling* folder (``fm scaling``) holds
``scaling.json``, ``scaling.csv`` and one run folder per keep-ratio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fm_engine.cards import METRIC_LABELS
from fm_engine.training.rehearsal import REHEARSAL_FILE, RehearsalConfig

SCALING_FILE = "scaling.json"
METRIC_NAMES = METRIC_LABELS | {"error": "error rate (1 - accuracy)"}


@dataclass(frozen=True)
class Study:
    path: Path
    kind: str  # rehearsal / scaling
    state: str  # done / running / queued / failed / cancelled

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        kind = "continual rehearsal" if self.kind == "rehearsal" else "scaling study"
        return f"{self.name} ({kind}, {self.state})"


def study_kind(path: Path) -> str | None:
    """``rehearsal`` / ``scaling`` for a study folder, else None."""
    if (path / REHEARSAL_FILE).is_file():
        return "rehearsal"
    if (path / SCALING_FILE).is_file():
        return "scaling"
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def study_state(path: Path, kind: str) -> str:
    if kind == "scaling":
        return "done" if (path / "scaling.csv").is_file() else "incomplete"
    from workbench.runs import run_info  # the state with a dead process noticed

    if not (path / "status.json").exists():
        return "done" if (path / "forgetting.csv").is_file() else "incomplete"
    return run_info(path).state


def load_study(path: Path) -> Study | None:
    kind = study_kind(path)
    return Study(path=path, kind=kind, state=study_state(path, kind)) if kind else None


def find_studies(root: Path) -> list[Study]:
    """The rehearsal and scaling folders directly under ``root`` (the workspace's runs), newest first."""
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and study_kind(p)]
    folders.sort(key=lambda p: max((p / f).stat().st_mtime for f in (REHEARSAL_FILE, SCALING_FILE)
                                   if (p / f).exists()), reverse=True)  # fmt: skip
    return [s for s in (load_study(p) for p in folders) if s is not None]


def resolve_folder(text: str) -> tuple[Study | None, str]:
    """A typed path -> (the study, "") or (None, a readable reason). A file inside a study means its folder."""
    text = text.strip().strip('"').strip("'")
    if not text:
        return None, ""
    path = Path(text).expanduser()
    if path.is_file():
        path = path.parent
    if not path.exists():
        return None, f"There is no folder `{path}` on this machine."
    if not path.is_dir():
        return None, f"`{path}` is not a folder."
    study = load_study(path.resolve())
    if study is None:
        return None, (
            f"`{path}` is not a rehearsal or scaling output: it holds neither `{REHEARSAL_FILE}` (written by "
            f"`fm rehearsal`) nor `{SCALING_FILE}` (written by `fm scaling`). Give the folder passed as `--out`."
        )
    return study, ""


def metric_label(metric: str, unit: Any = "", *, task_type: str = "", headline: bool = False) -> str:
    """``MAE (GPa)``, ``curve RMSE (MPa)``, ``error rate (1 - accuracy)`` ...

    ``headline``: the metric is a task's headline error (MAE, curve RMSE or error rate), so RMSE means a curve.
    """
    name = METRIC_NAMES.get(metric, metric)
    if metric in ("mae", "rmse") and (task_type == "kernel_regression" or (headline and metric == "rmse")):
        name = f"curve {name}"
    return f"{name} ({unit})" if isinstance(unit, str) and unit and metric in ("mae", "rmse") else name


# ----------------------------------------------------------------------------------------------- rehearsal
def read_rehearsal(path: Path) -> dict[str, Any]:
    """The rehearsal's resolved config, status and tables (None for a table not written yet)."""
    out: dict[str, Any] = {"config": _read_json(path / REHEARSAL_FILE), "status": _read_json(path / "status.json")}
    for name in ("forgetting", "metrics"):
        file = path / f"{name}.csv"
        try:
            out[name] = pd.read_csv(file, keep_default_na=True) if file.is_file() else None
        except (OSError, ValueError, pd.errors.ParserError):
            out[name] = None
    summary = path / "SUMMARY.md"
    out["summary"] = summary.read_text(encoding="utf-8", errors="replace") if summary.is_file() else ""
    return out


def task_order(config: dict[str, Any]) -> list[str]:
    return [str(t.get("name") or t.get("bundled") or "?") for t in config.get("tasks") or [] if isinstance(t, dict)]


def _step_labels(table: pd.DataFrame, order: list[str]) -> dict[int, str]:
    steps = sorted(int(c.split("_")[1]) for c in table.columns if c.startswith("step_") and c[5:].isdigit())
    return {s: f"after step {s}" + (f" (+{order[s - 1]})" if s - 1 < len(order) else "") for s in steps}


def forgetting_display(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """forgetting.csv turned so that each task is a column named with its error measure and unit
    (``bulk_modulus: test MAE (GPa)``); rows: after each step, right after learning, best, final, forgetting."""
    labels = _step_labels(table, order)
    columns = {}
    for _, row in table.iterrows():
        header = f"{row['task']}: test {metric_label(str(row['metric']), row.get('unit'), headline=True)}"
        values = [row.get(f"step_{s}") for s in labels]
        extra = [row.get(k, np.nan) for k in ("after_learning", "best", "final", "forgetting")]
        columns[header] = [float(v) if v is not None and pd.notna(v) else np.nan for v in values + extra]
    index = [*labels.values(), "right after learning it", "best (lowest)", "final", "forgetting (final - right after)"]
    frame = pd.DataFrame(columns, index=index)
    frame.index.name = "test error"
    return frame.reset_index()


def metrics_display(metrics: pd.DataFrame, split: str) -> pd.DataFrame:
    """metrics.csv for one split as a wide table: one row per step, one column per task and metric, with units."""
    rows = metrics[metrics["split"] == split].copy()
    if rows.empty:
        return pd.DataFrame()
    types = rows["type"] if "type" in rows else pd.Series("", index=rows.index)
    rows["column"] = [
        f"{task}: {metric_label(str(m), u if isinstance(u, str) else '', task_type=str(t))}"
        for task, m, u, t in zip(rows["task"], rows["metric"], rows["unit"], types, strict=True)
    ]
    rows["after step"] = [f"{s}: +{t}" for s, t in zip(rows["step"], rows["task_added"], strict=True)]
    column_order = list(dict.fromkeys(rows["column"]))
    wide = rows.pivot_table(index=["step", "after step"], columns="column", values="value", aggfunc="first", sort=False)
    wide = wide.reindex(columns=column_order).sort_index(level="step")
    return wide.reset_index().drop(columns="step").rename_axis(columns=None)


def steps_display(status: dict[str, Any]) -> pd.DataFrame:
    """The rehearsal's steps: task added, training rows (new + replayed), epochs, seconds, state, folder."""
    rows = []
    for step in status.get("steps") or []:
        rows.append({
            "step": step.get("step"), "task added": step.get("task"), "state": step.get("state", ""),
            "training rows (new + replayed)": step.get("train_rows", ""), "epochs": step.get("epochs"),
            "time (s)": step.get("seconds"), "run folder": step.get("run_dir", ""),
        })  # fmt: skip
    return pd.DataFrame(rows)


def replay_text(config: dict[str, Any]) -> str:
    ratio = config.get("replay_ratio", RehearsalConfig.replay_ratio)
    overrides = config.get("replay_ratios") or {}
    text = f"{float(ratio):.0%} of each earlier task's training compositions"
    if overrides:
        text += " (" + ", ".join(f"{task}: {float(r):.0%}" for task, r in overrides.items()) + ")"
    return text


# ----------------------------------------------------------------------------------------------- scaling
def read_scaling(path: Path) -> tuple[dict[str, Any], pd.DataFrame | None]:
    about = _read_json(path / SCALING_FILE)
    file = path / "scaling.csv"
    try:
        table = pd.read_csv(file) if file.is_file() else None
    except (OSError, ValueError, pd.errors.ParserError):
        table = None
    return about, table


def scaling_display(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """scaling.csv as one row per keep-ratio; columns with units: the thinned task's training compositions,
    then every task's test and validation error."""
    rows = table.copy()
    rows["unit"] = rows["unit"].where(rows["unit"].notna(), "")
    wide = pd.DataFrame(index=sorted(rows["ratio"].unique(), reverse=True))
    own = rows[rows["task"] == task].set_index("ratio")
    wide[f"{task}: training compositions"] = own["n_train"].reindex(wide.index)
    for name in dict.fromkeys(rows["task"]):
        part = rows[rows["task"] == name].set_index("ratio")
        label = metric_label(str(part["metric"].iloc[0]), part["unit"].iloc[0], headline=True)
        wide[f"{name}: test {label}"] = part["test_error"].reindex(wide.index)
        wide[f"{name}: validation {label}"] = part["val_error"].reindex(wide.index)
    wide.index.name = f"kept fraction of {task}'s training data"
    return wide.reset_index()
