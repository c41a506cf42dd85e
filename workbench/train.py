"""Run control of the Train page: the forms' starting values, the size presets, starting runs, the watched run.

The forms start from :class:`~workbench.components.train_form.FormValues` / ``RehearsalValues`` (whose defaults
come from ``TrainConfig``'s sections); a submitted form is checked by the engine's own config classes before
the run's process starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from fm_engine.datasets import bundled_datasets
from fm_engine.training import TrainConfig
from fm_engine.training.rehearsal import RehearsalConfig
from fm_engine.workspace import runs_dir, workspace_dir
from workbench import state
from workbench.components.train_form import (
    MLP_PRESETS,
    SIZE_PRESET,
    TRANSFORMER_PRESETS,
    FormValues,
    RehearsalValues,
    TaskChoice,
    build_config,
    build_rehearsal_config,
    bundled_choices,
    dims_text,
    start_choices,
    start_note,
    uploaded_choices,
    validate,
    validate_rehearsal,
)
from workbench.components.uploads import write_uploaded_tasks
from workbench.resources import foundation_checkpoint
from workbench.runs import list_runs, start_rehearsal, start_training

ENCODER_KEY = "train_encoder"
PRESET_KEY = "train_size_preset"
PICK_KEY = "train_monitor_pick"
ENCODERS = {"MLP": "mlp", "Transformer": "transformer"}  # label on the form -> EncoderConfig.type
SIZE_PRESETS = [*MLP_PRESETS, "custom"]
PRESET_INDEX = SIZE_PRESETS.index(SIZE_PRESET)  # the preset the Train form starts with
FORM = FormValues()  # the Train form's starting values
REHEARSAL = RehearsalValues()  # the rehearsal form's starting values


def encoder_label(encoder: str) -> str:
    """``mlp`` -> ``MLP`` (the label of an EncoderConfig type on the forms)."""
    return next(label for label, value in ENCODERS.items() if value == encoder)


def size_field(name: str) -> dict[str, Any]:
    """Keyword arguments of a size widget that the preset fills (``hidden_dims``, ``d_model``, ...): its key
    ``train_<name>`` and, while the session holds no value for it, its starting value from :data:`FORM`. (A
    widget given a value while the preset wrote one into the session would make Streamlit warn.)"""
    key = f"train_{name}"
    return {"key": key} if key in st.session_state else {"key": key, "value": getattr(FORM, name)}


def apply_preset() -> None:
    """Fill the size fields from the chosen preset (an ``on_change``: runs before the widgets are drawn)."""
    preset = st.session_state.get(PRESET_KEY)
    if preset in MLP_PRESETS:
        st.session_state["train_hidden_dims"] = dims_text(MLP_PRESETS[preset])
    if preset in TRANSFORMER_PRESETS:
        for name, value in TRANSFORMER_PRESETS[preset].items():
            st.session_state[f"train_{name}"] = value


@dataclass
class TaskOptions:
    """The tasks the forms offer: bundled ones by dataset title, the session's uploaded ones, and which of
    them are classifications (balanced class weights apply to those)."""

    groups: dict[str, list[TaskChoice]]
    uploads: list[TaskChoice]
    uploaded: Mapping[str, Any]

    @property
    def classification(self) -> list[str]:
        choices = [c for group in self.groups.values() for c in group] + self.uploads
        return [c.name for c in choices if c.type == "classification"]

    @property
    def labels(self) -> dict[str, str]:
        """Bundled task name -> its label (name and unit)."""
        return {c.name: c.label for group in self.groups.values() for c in group}


def task_options() -> TaskOptions:
    uploaded = state.get(state.UPLOADED_TASKS) or {}
    return TaskOptions(bundled_choices(bundled_datasets()), uploaded_choices(uploaded), uploaded)


def start_options() -> tuple[list[str], dict[str, str], str]:
    """The Train form's Start-from choices (the foundation first when it is installed), the finished runs whose
    checkpoint a run can start from (name -> folder), and the line saying what starting from the foundation means."""
    foundation = foundation_checkpoint()
    runs = {run.name: str(run.path) for run in list_runs() if run.state == "done" and run.has_checkpoint}
    return start_choices(foundation is not None), runs, start_note(foundation[0] if foundation else None)


def submit_training(values: FormValues, options: TaskOptions) -> list[str]:
    """Validate, build and check the config, start the run; returns the problems (empty on success)."""
    errors = validate(values)
    if errors:
        return errors
    try:
        files = write_uploaded_tasks(workspace_dir() / "uploads", values.uploaded, dict(options.uploaded))
        config = build_config(values, files, options.classification)
        TrainConfig.from_dict(config)  # the engine's own validation
    except (ValueError, TypeError, KeyError, OSError) as error:
        return [f"The configuration is not valid: {error}"]
    return launch(lambda: start_training(config, values.name.strip()), "training")


def submit_rehearsal(values: RehearsalValues, options: TaskOptions) -> list[str]:
    errors = validate_rehearsal(values)
    if errors:
        return errors
    try:
        config = build_rehearsal_config(values, options.classification)
        RehearsalConfig.from_dict(config)  # the engine's own validation
    except (ValueError, TypeError, KeyError) as error:
        return [f"The configuration is not valid: {error}"]
    return launch(lambda: start_rehearsal(config, values.name.strip()), "rehearsal")


def launch(start: Callable[[], Path], what: str) -> list[str]:
    """Start a run's process and watch it in the live monitor; returns the problems (empty on success)."""
    try:
        run_dir = start()
    except (OSError, ValueError) as error:
        return [f"Could not start the {what} process: {error}"]
    state.watch(run_dir)
    st.toast(f"{what.capitalize()} started: {run_dir.name}", icon=":material/model_training:")
    return []


def show_problems(what: str, problems: list[str]) -> None:
    """The problems that kept a form from starting its run, as one error box."""
    if problems:
        st.error(f"Cannot start {what}:\n\n" + "\n".join(f"- {p}" for p in problems), icon=":material/error:")


def watched_run() -> Path | None:
    """The run this session follows until it ends: the one it started or picked (also after a reload: it is kept
    in the page address); otherwise the newest queued or running run of the workspace, followed from then on."""
    run_dir = state.watched(runs_dir())
    if run_dir is None:
        active = [run for run in list_runs() if run.state in ("queued", "running")]
        run_dir = active[0].path if active else None
    if run_dir is not None:
        state.watch(run_dir)  # (again: a page switch empties the address)
    return run_dir


def pick_run() -> None:
    """Watch the run picked under *Past runs* (an ``on_change``)."""
    name = st.session_state.get(PICK_KEY)
    runs = {run.name: run.path for run in list_runs()}
    if name in runs:
        state.watch(runs[name])
