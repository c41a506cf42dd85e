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
import yaml

from fm_engine.datasets import bundled_datasets
from fm_engine.training import TrainConfig
from fm_engine.training.config import START_AUTO
from fm_engine.training.rehearsal import RehearsalConfig
from fm_engine.training.run_files import RunDirectory
from fm_engine.workspace import runs_dir, workspace_dir
from workbench import state
from workbench.components.train_form import (
    BATCH_SIZES,
    LEARNING_RATES,
    MLP_PRESETS,
    SIZE_PRESET,
    START_CHECKPOINT,
    TRANSFORMER_PRESETS,
    FormValues,
    RehearsalValues,
    ScalingValues,
    TaskChoice,
    build_config,
    build_rehearsal_config,
    build_scaling_config,
    bundled_choices,
    dims_text,
    form_values,
    parse_ratios,
    run_kind,
    start_choices,
    start_note,
    uploaded_choices,
    validate,
    validate_rehearsal,
    validate_scaling,
)
from workbench.components.uploads import write_uploaded_tasks
from workbench.resources import foundation_checkpoint
from workbench.runs import list_runs, start_rehearsal, start_scaling, start_training, submitted_config
from workbench.saved_uploads import uploaded_tasks

ENCODER_KEY = "train_encoder"
PRESET_KEY = "train_size_preset"
PICK_KEY = "train_monitor_pick"
ENCODERS = {"MLP": "mlp", "Transformer": "transformer"}  # label on the form -> EncoderConfig.type
SIZE_PRESETS = [*MLP_PRESETS, "custom"]
PRESET_INDEX = SIZE_PRESETS.index(SIZE_PRESET)  # the preset the Train form starts with
FORM = FormValues()  # the Train form's starting values
REHEARSAL = RehearsalValues()  # the rehearsal form's starting values
SCALING = ScalingValues()  # the scaling-study form's starting values


def encoder_label(encoder: str) -> str:
    """``mlp`` -> ``MLP`` (the label of an EncoderConfig type on the forms)."""
    return next(label for label, value in ENCODERS.items() if value == encoder)


FIELD_KEYS = {  # FormValues field -> the Train form's widget key (the size fields: train_<field>)
    "name": "train_name", "seed": "train_seed", "ensemble_members": "train_ensemble", "dropout": "train_dropout",
    "loss_balancer": "train_balancer", "autoencoder": "train_autoencoder", "balanced_classes": "train_balanced",
    "threshold_on_validation": "train_threshold", "schedule": "train_schedule", "max_epochs": "train_epochs",
    "patience": "train_patience", "batch_size": "train_batch", "lr": "train_lr", "weight_averaging": "train_ema",
    "val_ratio": "train_val", "test_ratio": "train_test",
}  # fmt: skip
RESTORED = "train_restored"  # the note the page shows after the form was restored from a run


def field_key(name: str) -> str:
    return FIELD_KEYS.get(name, f"train_{name}")


def form_field(name: str, options: list[Any] | None = None) -> dict[str, Any]:
    """Keyword arguments of the Train form's widget for the :class:`FormValues` field ``name``: its key and, while
    the session holds no value for it, its starting value from :data:`FORM` (``options``: an ``index`` into them
    instead). A widget given a value while the preset or a restore wrote one into the session would make Streamlit
    warn."""
    key = field_key(name)
    if key in st.session_state:
        return {"key": key}
    start = getattr(FORM, name)
    return {"key": key, "index": options.index(start)} if options is not None else {"key": key, "value": start}


def preset_field() -> dict[str, Any]:
    """The size preset's key and, until the session holds one (e.g. "custom" after a restore), its starting one."""
    return {"key": PRESET_KEY} | ({} if PRESET_KEY in st.session_state else {"index": PRESET_INDEX})


def restore_controls(column: Any) -> None:
    """A button (in ``column``) that fills the Train form from the settings of :func:`restorable_run`, and after a
    restore a note saying whose settings the form holds and what it could not take back."""
    if (run_dir := restorable_run()) is not None:
        column.button(
            f"Restore the form from {run_dir.name}", key="train_restore", on_click=restore_form, args=(run_dir,),
            icon=":material/history:", help="Fill the form with the settings this run was started with.",
        )  # fmt: skip
    if restored := st.session_state.pop(RESTORED, None):
        notes = "".join(f"\n- Not restored: {note}." for note in restored[1])
        st.info(f"The form holds the settings of **{restored[0]}**; change any, then start.{notes}",
                icon=":material/history:")  # fmt: skip


def encoder_field() -> dict[str, Any]:
    """The encoder control's key and, until the session holds one, its starting choice."""
    return {"key": ENCODER_KEY} | ({} if ENCODER_KEY in st.session_state else {"default": encoder_label(FORM.encoder)})


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
    uploaded = uploaded_tasks(st.session_state, state.UPLOADED_TASKS)  # restores saved uploads after a reload
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


def _checked_launch(
    errors: list[str],
    build: Callable[[], dict[str, Any]],
    engine: Any,
    start: Callable[[dict[str, Any]], Path],
    what: str,
) -> list[str]:
    """The form's ``errors``, else the config ``build`` makes checked by the ``engine`` config class's
    ``from_dict``, else :func:`launch` of ``start(config)``; returns the problems (empty on success)."""
    if errors:
        return errors
    try:
        config = build()
        engine.from_dict(config)  # the engine's own validation
    except (ValueError, TypeError, KeyError) as error:
        return [f"The configuration is not valid: {error}"]
    return launch(lambda: start(config), what)


def submit_rehearsal(values: RehearsalValues, options: TaskOptions) -> list[str]:
    return _checked_launch(
        validate_rehearsal(values), lambda: build_rehearsal_config(values, options.classification), RehearsalConfig,
        lambda config: start_rehearsal(config, values.name.strip()), "rehearsal",
    )  # fmt: skip


def submit_scaling(values: ScalingValues, options: TaskOptions) -> list[str]:
    """Validate and check the scaling study's config (every run's training config), start it."""
    errors = validate_scaling(values)
    return _checked_launch(
        errors, lambda: build_scaling_config(values, options.classification), TrainConfig,
        lambda config: start_scaling(config, values.task or "", parse_ratios(values.ratios), values.name.strip()),
        "scaling study",
    )  # fmt: skip


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
    """The problems that kept a form from starting its run, as one error box that says so when the live monitor
    below still shows an earlier run (its results are not the refused run's)."""
    if not problems:
        return
    earlier = watched_run()
    note = (
        ""
        if earlier is None
        else f"\n\nNothing was started: the live monitor below still shows the earlier run **{earlier.name}**."
    )
    st.error(f"Cannot start {what}:\n\n" + "\n".join(f"- {p}" for p in problems) + note, icon=":material/error:")


def restorable_run() -> Path | None:
    """The training run the form can be restored from: the watched run when it is a training run with a config,
    else the newest such run of the workspace."""
    runs = [run for run in list_runs() if run_kind(run.status) == "training" and run_config(run.path)]
    watched = state.get(state.WATCHED_RUN)
    chosen = next((run for run in runs if str(run.path) == watched), runs[0] if runs else None)
    return chosen.path if chosen is not None else None


def run_config(run_dir: Path) -> dict[str, Any] | None:
    """The config a run was started with (the workbench's, where the schedule left to the data size is still
    None), else the run's recorded config.yaml; None without either."""
    config = submitted_config(run_dir)
    if config is None:
        try:
            config = yaml.safe_load(RunDirectory(run_dir).config_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return None
    return config if isinstance(config, dict) else None


def _nearest(value: float, choices: list[Any]) -> Any:
    return min(choices, key=lambda choice: abs(float(choice) - float(value)))


def restore_form(run_dir: Path) -> None:
    """Fill the Train form with the settings ``run_dir`` was started with (an ``on_click``: runs before the widgets
    are drawn); what the form cannot take back is noted (:data:`RESTORED`)."""
    config = run_config(run_dir) or {}
    options = task_options()
    values, notes = form_values(config, uploaded=[choice.name for choice in options.uploads])
    widgets = {name: getattr(values, name) for name in FIELD_KEYS} | {
        "hidden_dims": values.hidden_dims, "d_model": int(values.d_model), "num_layers": int(values.num_layers),
        "nhead": int(values.nhead), "seed": int(values.seed), "ensemble_members": int(values.ensemble_members),
        "max_epochs": int(values.max_epochs), "patience": int(values.patience),
        "batch_size": _nearest(values.batch_size, BATCH_SIZES), "lr": _nearest(values.lr, LEARNING_RATES),
        "dropout": min(max(float(values.dropout), 0.0), 0.5), "val_ratio": min(max(float(values.val_ratio), 0.05), 0.3),
        "test_ratio": min(max(float(values.test_ratio), 0.0), 0.3),
    }  # fmt: skip
    for name, value in widgets.items():
        st.session_state[field_key(name)] = value
    st.session_state[ENCODER_KEY] = encoder_label(values.encoder)
    st.session_state[PRESET_KEY] = "custom"
    for choice in (c for group in options.groups.values() for c in group):
        st.session_state[f"train_task_{choice.name}"] = choice.name in values.bundled
    for choice in options.uploads:
        st.session_state[f"train_upload_{choice.name}"] = choice.name in values.uploaded
    choices, runs, _ = start_options()
    start = values.start_from
    if start in choices:
        st.session_state["train_start"] = start
    elif start not in (START_AUTO, ""):
        name = Path(start).name
        st.session_state["train_start"] = START_CHECKPOINT
        st.session_state["train_start_run"] = name if name in runs else None
        if name not in runs:
            notes.append(f"its start checkpoint {start} is not a finished run of this workspace: choose one")
    else:
        st.session_state["train_start"] = choices[0]
    st.session_state[RESTORED] = (run_dir.name, notes)


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
