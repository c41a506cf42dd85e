"""Pure helpers of the Train page: task choices, form validation, the training-config dict, the runs table."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from fm_engine.cards import ModelCard
from fm_engine.data.recipe import auto_recipe
from fm_engine.datasets import BundledDataset, BundledTask
from fm_engine.models import AutoencoderConfig, EncoderConfig
from fm_engine.tasks import TaskSpec
from fm_engine.thresholds import AUTO, HALF
from fm_engine.training.config import (
    START_AUTO,
    START_FOUNDATION,
    START_SCRATCH,
    DataSection,
    EnsembleConfig,
    FinetuneSection,
    ModelSection,
    OptimizerSection,
    TrainConfig,
    TrainerSection,
)
from fm_engine.training.rehearsal import RehearsalConfig

MLP_PRESETS: dict[str, list[int]] = {
    "small": [128, 64],
    "medium": EncoderConfig().hidden_dims,  # the encoder's default
    "large": [512, 256],
}
TRANSFORMER_PRESETS: dict[str, dict[str, int]] = {
    "small": {key: getattr(EncoderConfig, key) for key in ("d_model", "num_layers", "nhead")},  # the default
    "medium": {"d_model": 64, "num_layers": 3, "nhead": 4},
    "large": {"d_model": 128, "num_layers": 4, "nhead": 8},
}
SIZE_PRESET = "medium"  # the size the Train form starts with
LEARNING_RATES = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2]  # the choices of the learning-rate sliders
BATCH_SIZES = [16, 32, 64, 128, 256, 512]
# The Train form's schedule (epochs, patience, batch size, validation share): automatic, TrainConfig's default
# (left None, chosen from the data size by fm_engine.data.recipe.auto_recipe), or set by hand.
SCHEDULE_AUTO, SCHEDULE_HAND = "auto", "hand"
SCHEDULES = {SCHEDULE_AUTO: "automatic by data size", SCHEDULE_HAND: "set by hand"}
SCHEDULE_KEYS = (("trainer", "max_epochs"), ("trainer", "patience"), ("data", "batch_size"), ("data", "val_ratio"))
# The starting values of the by-hand schedule fields (the schedule's own defaults are None: by data size) and of
# the rehearsal form, which always sets them; every other setting starts at the TrainConfig default.
FORM_TRAINER = TrainerSection(max_epochs=60, patience=15)
FORM_DATA = DataSection(batch_size=128, val_ratio=0.1)
REHEARSAL_TRAINER = TrainerSection(max_epochs=30, patience=10)  # per step
REHEARSAL_PRESET = "small"
FINETUNE_EPOCHS = 20  # the fine-tune form's epoch limit (fm finetune keeps the original run's without one)
TYPE_LABELS = {"regression": "number", "classification": "classes", "kernel_regression": "curve"}
START_CHECKPOINT = "a checkpoint"  # the Start-from choice whose checkpoint is picked beside it


def start_choices(foundation: bool) -> list[str]:
    """The Train form's "Start from" choices, the preselected one first: the foundation when it is installed."""
    return [START_FOUNDATION, START_SCRATCH, START_CHECKPOINT] if foundation else [START_SCRATCH, START_CHECKPOINT]


def start_note(foundation: str | None) -> str:
    """One line under the Train form's "Start from": what fine-tuning from the foundation means (``foundation``:
    the installed foundation's picker label), or how to get one."""
    if foundation is None:
        return (
            "No foundation is installed (`make foundation` builds it): a run starts from scratch or from one of your "
            "checkpoints."
        )
    rows = FinetuneSection().replay_rows
    return (
        f"foundation ({foundation}): your tasks get new heads on its pretrained encoder; its DFT heads (formation "
        f"enthalpy, energy above hull, ...) are kept, trained on a replay of {rows} corpus compositions each (frozen "
        "when no corpus is found: `fm corpus` builds it), so the model also predicts them and Inverse design can "
        "target stability. The encoder's size fields apply only to runs from scratch."
    )


def schedule_label(schedule: str) -> str:
    """The Train form's label of a schedule choice (the automatic one recommended)."""
    return SCHEDULES[schedule] + (" (recommended)" if schedule == SCHEDULE_AUTO else "")


def schedule_note(*, examples: Sequence[int] = (300, 10_000)) -> str:
    """One line under the Train form's "Schedule": what the automatic schedule gives for a few data sizes
    (labelled compositions; from :func:`fm_engine.data.recipe.auto_recipe` at the form's test share)."""
    shown = []
    for n in examples:
        recipe = auto_recipe(n, test_ratio=FormValues.test_ratio)
        shown.append(f"{n:,} compositions: up to {recipe.max_epochs} epochs, patience {recipe.patience}, batch "
                     f"{recipe.batch_size}, validation {recipe.val_ratio:g}")  # fmt: skip
    return (
        f"Automatic: chosen from the number of labelled compositions when the run starts ({'; '.join(shown)}); the "
        "live monitor shows what a run resolved to. The fields marked *by hand* apply only to a schedule set by hand."
    )


def start_from_value(choice: str, checkpoint: str | None) -> str:
    """The config's ``start_from`` for a Start-from choice (``checkpoint``: the folder picked for "a checkpoint";
    "" when none is picked, which :func:`validate` reports)."""
    return (checkpoint or "") if choice == START_CHECKPOINT else choice


@dataclass(frozen=True)
class TaskChoice:
    """One task the user can tick: bundled (``dataset`` set) or uploaded (``spec`` set)."""

    name: str
    type: str
    unit: str
    group: str
    n_rows: int | None = None
    description: str = ""
    uploaded: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit_text})"

    @property
    def unit_text(self) -> str:
        return self.unit or TYPE_LABELS.get(self.type, self.type)


def _unit_of(task: BundledTask) -> str:
    if task.type == "classification":
        return "classes: " + ", ".join(task.classes or ())
    if task.type == "kernel_regression":
        return f"{task.unit}, vs T in {task.t_unit}"
    return task.unit


def bundled_choices(datasets: Sequence[BundledDataset]) -> dict[str, list[TaskChoice]]:
    """Dataset title -> its tasks as choices (catalog order)."""
    groups: dict[str, list[TaskChoice]] = {}
    for dataset in datasets:
        groups[dataset.title] = [
            TaskChoice(
                name=t.name,
                type=t.type,
                unit=_unit_of(t),
                group=dataset.title,
                n_rows=t.n_rows,
                description=t.description,
            )  # fmt: skip
            for t in dataset.tasks
        ]
    return groups


def uploaded_choices(uploaded: Mapping[str, Mapping[str, Any]] | None) -> list[TaskChoice]:
    """Choices for the tasks uploaded on the Data page (``{name: {"spec": dict, "frame": DataFrame}}``)."""
    choices = []
    for name, entry in (uploaded or {}).items():
        spec = dict(entry.get("spec") or {})
        kind = str(spec.get("type", "regression"))
        unit = spec.get("unit") or ""
        if kind == "classification" and spec.get("classes"):
            unit = "classes: " + ", ".join(str(c) for c in spec["classes"])
        elif kind == "kernel_regression":
            unit = f"{unit or '?'}, vs {spec.get('t_column', 't')} in {spec.get('t_unit') or '?'}"
        frame = entry.get("frame")
        rows = len(frame) if isinstance(frame, pd.DataFrame) else None
        choices.append(
            TaskChoice(name=str(spec.get("name") or name), type=kind, unit=unit, group="Your uploaded data",
                       n_rows=rows, description=str(spec.get("description", "")), uploaded=True)
        )  # fmt: skip
    return choices


def parse_hidden_dims(text: str) -> list[int]:
    """``"256, 128"`` -> ``[256, 128]``; raises ValueError with a readable message."""
    parts = [p for p in re.split(r"[\s,;x]+", text.strip()) if p]
    if not parts:
        raise ValueError("Hidden layer widths: give at least one width, e.g. 256, 128.")
    dims = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise ValueError(f"Hidden layer widths: '{part}' is not a whole number (write e.g. 256, 128).") from None
        if not 1 <= value <= 8192:
            raise ValueError(f"Hidden layer widths: {value} is out of range (1 to 8192 neurons).")
        dims.append(value)
    if len(dims) > 8:
        raise ValueError("Hidden layer widths: at most 8 layers.")
    return dims


def safe_file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-.") or "task"


def dims_text(dims: Sequence[int]) -> str:
    """``[256, 128]`` -> ``"256, 128"`` (the text of the hidden-widths field)."""
    return ", ".join(str(d) for d in dims)


@dataclass
class FormValues:
    """What the Train form holds (widget values, not yet validated). The defaults are the form's starting
    values: TrainConfig's defaults (the schedule automatic), the :data:`SIZE_PRESET` sizes, and the by-hand
    schedule fields' :data:`FORM_TRAINER` / :data:`FORM_DATA` values (sent only with ``schedule`` "hand")."""

    name: str = "my-model"
    bundled: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    encoder: str = EncoderConfig.type
    hidden_dims: str = dims_text(MLP_PRESETS[SIZE_PRESET])
    d_model: int = TRANSFORMER_PRESETS[SIZE_PRESET]["d_model"]
    num_layers: int = TRANSFORMER_PRESETS[SIZE_PRESET]["num_layers"]
    nhead: int = TRANSFORMER_PRESETS[SIZE_PRESET]["nhead"]
    dropout: float = EncoderConfig.dropout
    loss_balancer: bool = ModelSection.loss_balancer
    autoencoder: bool = AutoencoderConfig.enabled
    balanced_classes: bool = True  # class_weights "balanced" for the chosen classification tasks
    # binary classification: the decision threshold chosen on the validation split (TaskSpec's default); off:
    # decision_threshold 0.5 (the most probable class) for the chosen classification tasks
    threshold_on_validation: bool = TaskSpec.decision_threshold == AUTO
    schedule: str = SCHEDULE_AUTO  # SCHEDULE_HAND: max_epochs, patience, batch_size and val_ratio apply
    max_epochs: int = FORM_TRAINER.max_epochs
    patience: int = FORM_TRAINER.patience
    batch_size: int = FORM_DATA.batch_size
    lr: float = OptimizerSection.lr
    weight_averaging: bool = FORM_TRAINER.ema_decay is not None
    val_ratio: float = FORM_DATA.val_ratio
    test_ratio: float = FORM_DATA.test_ratio
    seed: int = TrainConfig.seed
    start_from: str = START_AUTO  # see start_from_value
    ensemble_members: int = EnsembleConfig.members  # 1: a single model; N > 1: ``ensemble: {members: N}``


def encoder_settings(values: FormValues) -> dict[str, Any]:
    """The ``model.encoder`` section the form's model fields describe."""
    if values.encoder == "mlp":
        encoder: dict[str, Any] = {"type": "mlp", "hidden_dims": parse_hidden_dims(values.hidden_dims)}
    else:
        encoder = {"type": "transformer", "d_model": int(values.d_model), "num_layers": int(values.num_layers),
                   "nhead": int(values.nhead), "dim_feedforward": 2 * int(values.d_model)}  # fmt: skip
    encoder["dropout"] = float(values.dropout)
    return encoder


def validate(values: FormValues) -> list[str]:
    """Readable problems with the form (empty if it can be submitted); the model's sizes are checked by the
    encoder config itself (e.g. the token width must be divisible by the number of attention heads)."""
    errors = []
    if not values.name.strip():
        errors.append("Give the run a name.")
    if not values.bundled and not values.uploaded:
        errors.append("Select at least one task to train.")
    if not values.start_from:
        errors.append("Choose the checkpoint to start from (or start from scratch).")
    try:
        EncoderConfig(**encoder_settings(values))
    except ValueError as error:
        errors.append(str(error) if values.encoder == "mlp" else f"Transformer encoder: {error}.")
    if values.schedule not in SCHEDULES:
        errors.append(f"Unknown schedule '{values.schedule}' (expected {' or '.join(SCHEDULES)}).")
    hand = values.schedule == SCHEDULE_HAND
    if hand and values.max_epochs < 1:
        errors.append("Train for at least 1 epoch.")
    try:
        EnsembleConfig(members=int(values.ensemble_members))
    except ValueError as error:
        errors.append(f"{error}.")
    if (values.val_ratio if hand else 0.0) + values.test_ratio >= 0.9:
        errors.append("Validation + test fractions leave too little training data (keep their sum below 0.9).")
    return errors


def build_config(values: FormValues, uploaded_files: Mapping[str, tuple[dict[str, Any], str]] | None = None,
                 classification: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The training-config dict (see ``TrainConfig``) for validated form values.

    ``uploaded_files``: uploaded task name -> (its TaskSpec dict, absolute path of its CSV file).
    ``classification``: names of the chosen classification tasks (balanced class weights and a fixed decision
    threshold apply to them).
    """
    tasks: list[dict[str, Any]] = []
    for name in values.bundled:
        entry: dict[str, Any] = {"bundled": name}
        if values.balanced_classes and name in classification:
            entry["class_weights"] = "balanced"
        if not values.threshold_on_validation and name in classification:
            entry["decision_threshold"] = HALF
        tasks.append(entry)
    for name in values.uploaded:
        spec, path = (uploaded_files or {})[name]
        entry = {k: v for k, v in spec.items() if v is not None}
        entry["data_files"] = [str(path)]
        if values.balanced_classes and entry.get("type") == "classification" and "class_weights" not in entry:
            entry["class_weights"] = "balanced"
        if not values.threshold_on_validation and entry.get("type") == "classification":
            entry["decision_threshold"] = HALF
        tasks.append(entry)
    encoder = encoder_settings(values)
    config: dict[str, Any] = {
        "name": values.name.strip(),
        "seed": int(values.seed),
        "tasks": tasks,
        "start_from": values.start_from,
        "model": {
            "encoder": encoder,
            "autoencoder": {"enabled": bool(values.autoencoder)},
            "loss_balancer": bool(values.loss_balancer),
        },  # fmt: skip
        "data": {"test_ratio": float(values.test_ratio)},
        "optimizer": {"lr": float(values.lr)},
        "trainer": {
            "progress_bar": False,
            "ema_decay": FORM_TRAINER.ema_decay if values.weight_averaging else None,
        },
    }
    if values.schedule == SCHEDULE_HAND:  # else left out: None, chosen from the data size when the run starts
        config["trainer"] |= {"max_epochs": int(values.max_epochs), "patience": int(values.patience)}
        config["data"] |= {"batch_size": int(values.batch_size), "val_ratio": float(values.val_ratio)}
    if int(values.ensemble_members) > 1:  # a single model's config stays as before
        config["ensemble"] = {"members": int(values.ensemble_members)}
    return config


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    part = config.get(name)
    return part if isinstance(part, Mapping) else {}


def form_values(config: Mapping[str, Any], *, uploaded: Sequence[str] = ()) -> tuple[FormValues, list[str]]:
    """The Train form's values that :func:`build_config` turns into ``config`` (a training-config dict: the one a
    run was started with, or its recorded ``config.yaml``), and notes on what the form cannot take back (a task
    from a file that is not among this session's ``uploaded`` task names). Settings the config leaves out keep the
    form's starting values; a schedule with every setting given is "set by hand"."""
    start, notes = FormValues(), []
    values: dict[str, Any] = {"name": str(config.get("name") or start.name), "bundled": [], "uploaded": []}
    classification = []
    for entry in config.get("tasks") or []:
        if not isinstance(entry, Mapping):
            continue
        name = str(entry.get("bundled") or entry.get("name") or "")
        if entry.get("bundled"):
            values["bundled"].append(name)
        elif name in uploaded:
            values["uploaded"].append(name)
        else:
            notes.append(f"task {name or '?'} (from {', '.join(map(str, entry.get('data_files') or [])) or 'a file'})"
                         " is not on the form: upload its CSV on the Data page and tick it")  # fmt: skip
            continue
        if "class_weights" in entry or "decision_threshold" in entry or entry.get("type") == "classification":
            classification.append(entry)
    model = _section(config, "model")
    encoder = _section(model, "encoder")
    values["encoder"] = str(encoder.get("type") or start.encoder)
    if encoder.get("hidden_dims"):
        values["hidden_dims"] = dims_text(encoder["hidden_dims"])
    for key in ("d_model", "num_layers", "nhead", "dropout"):
        if encoder.get(key) is not None:
            values[key] = encoder[key]
    if _section(model, "autoencoder").get("enabled") is not None:
        values["autoencoder"] = bool(model["autoencoder"]["enabled"])
    if model.get("loss_balancer") is not None:
        values["loss_balancer"] = bool(model["loss_balancer"])
    if classification:
        values["balanced_classes"] = any(entry.get("class_weights") == "balanced" for entry in classification)
        values["threshold_on_validation"] = not any(entry.get("decision_threshold") == HALF for entry in classification)
    trainer, data = _section(config, "trainer"), _section(config, "data")
    schedule = {key: _section(config, section).get(key) for section, key in SCHEDULE_KEYS}
    values["schedule"] = SCHEDULE_HAND if all(value is not None for value in schedule.values()) else SCHEDULE_AUTO
    values |= {key: value for key, value in schedule.items() if value is not None}
    if data.get("test_ratio") is not None:
        values["test_ratio"] = float(data["test_ratio"])
    if _section(config, "optimizer").get("lr") is not None:
        values["lr"] = float(config["optimizer"]["lr"])
    if "ema_decay" in trainer:
        values["weight_averaging"] = trainer["ema_decay"] is not None
    if config.get("seed") is not None:
        values["seed"] = int(config["seed"])
    values["start_from"] = str(config.get("start_from") or start.start_from)
    values["ensemble_members"] = int(_section(config, "ensemble").get("members") or 1)
    return FormValues(**values), notes


def local_time(iso: str | None) -> str:
    """``2025-01-02T10:00:00+00:00`` -> ``2025-01-02 11:00`` in the server's local time."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(iso)


RUN_KINDS = {"finetune": "fine-tune", "rehearsal": "rehearsal", "scaling": "scaling study"}


def run_kind(status: Mapping[str, Any]) -> str:
    """``training``, ``fine-tune`` or ``rehearsal`` from a run's status.json."""
    return RUN_KINDS.get(str(status.get("kind", "")), "training")


def progress_text(status: Mapping[str, Any]) -> str:
    """``12 / 60`` epochs; for a running rehearsal ``step 2 / 3, epoch 4 / 10`` (epochs of the current step)."""
    total = status.get("max_epochs")
    epoch = status.get("epoch", 0) or 0
    epochs = f"{epoch} / {total}" if total else str(epoch)
    if status.get("kind") in ("rehearsal", "scaling"):
        what = "ratio" if status.get("kind") == "scaling" else "step"
        steps = f"{what} {status.get('step') or 0} / {status.get('n_steps') or '?'}"
        return steps if status.get("state") in ("done", "failed", "cancelled") else f"{steps}, epoch {epochs}"
    return epochs


def runs_table(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per run (``RunInfo``-like objects with ``name``, ``state``, ``status``), newest first."""
    rows = []
    for run in runs:
        status = run.status
        best = status.get("best_val_loss")
        rows.append(
            {
                "run": run.name,
                "kind": run_kind(status),
                "state": run.state,
                "started": local_time(status.get("started_at") or status.get("created_at")),
                "epochs": progress_text(status),
                "best val loss (normalised)": float(best) if isinstance(best, int | float) else None,
                "message": status.get("message", ""),
            }
        )
    columns = ["run", "kind", "state", "started", "epochs", "best val loss (normalised)", "message"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------------------------- fine-tune
def card_task_choices(card: ModelCard | None) -> dict[str, str]:
    """Task name -> label with its unit (or classes), from a checkpoint's model card."""
    choices = {}
    for task in card.tasks if card is not None else []:
        if task.type == "classification":
            unit = "classes: " + ", ".join(task.classes) if task.classes else ""
        elif task.type == "kernel_regression":
            unit = f"{task.unit or '?'}, vs T in {task.t_unit or '?'}"
        else:
            unit = task.unit
        choices[task.name] = f"{task.name} ({unit or TYPE_LABELS.get(task.type, task.type)})"
    return choices


def card_learning_rate(card: ModelCard | None) -> float | None:
    """The learning rate the checkpoint was trained with (from the training config in its card)."""
    lr = ((card.config if card is not None else {}).get("optimizer") or {}).get("lr")
    return float(lr) if isinstance(lr, int | float) else None


def validate_finetune(name: str, source: Any, tasks: Sequence[str], max_epochs: int) -> list[str]:
    errors = []
    if not name.strip():
        errors.append("Give the fine-tuned run a name.")
    if source is None:
        errors.append("Choose the trained model to start from.")
    if not tasks:
        errors.append("Select at least one task whose head is retrained.")
    if max_epochs < 1:
        errors.append("Train for at least 1 epoch.")
    return errors


# ----------------------------------------------------------------------------------------------- rehearsal
@dataclass
class RehearsalValues:
    """What the rehearsal form holds: tasks in learning order, replay and per-step training settings (defaults:
    the form's starting values)."""

    name: str = "rehearsal"
    tasks: list[str] = field(default_factory=list)
    replay_ratio: float = RehearsalConfig.replay_ratio
    encoder: str = EncoderConfig.type
    preset: str = REHEARSAL_PRESET
    max_epochs: int = REHEARSAL_TRAINER.max_epochs
    patience: int = REHEARSAL_TRAINER.patience
    batch_size: int = FORM_DATA.batch_size
    lr: float = OptimizerSection.lr
    autoencoder: bool = AutoencoderConfig.enabled
    balanced_classes: bool = True
    seed: int = TrainConfig.seed


def validate_rehearsal(values: RehearsalValues) -> list[str]:
    errors = []
    if not values.name.strip():
        errors.append("Give the rehearsal run a name.")
    if len(values.tasks) < 2:
        errors.append("Select at least two tasks: the model learns them one after another, in the order chosen.")
    if len(set(values.tasks)) != len(values.tasks):
        errors.append("Each task can be learned only once.")
    if not 0.0 <= values.replay_ratio <= 1.0:
        errors.append("The replay ratio is a fraction between 0 and 1.")
    if values.max_epochs < 1:
        errors.append("Train for at least 1 epoch per step.")
    if values.preset not in MLP_PRESETS:
        errors.append(f"Unknown size preset '{values.preset}' (small, medium or large).")
    return errors


def encoder_values(encoder: str, preset: str) -> dict[str, Any]:
    """The size fields of ``FormValues`` for an encoder type and a size preset (as the Train form fills them)."""
    if encoder == "mlp":
        return {"encoder": "mlp", "hidden_dims": dims_text(MLP_PRESETS[preset])}
    return {"encoder": "transformer", **TRANSFORMER_PRESETS[preset]}


def build_rehearsal_config(values: RehearsalValues, classification: Sequence[str] = ()) -> dict[str, Any]:
    """The rehearsal-config dict (``fm rehearsal --config``): the training sections as ``build_config`` makes
    them, tasks in learning order, and the replay ratio. ``trainer.max_epochs`` is per step."""
    form = FormValues(
        name=values.name, bundled=list(values.tasks), **encoder_values(values.encoder, values.preset),
        autoencoder=values.autoencoder, balanced_classes=values.balanced_classes, schedule=SCHEDULE_HAND,
        max_epochs=values.max_epochs, patience=values.patience, batch_size=values.batch_size, lr=values.lr,
        seed=values.seed,
        weight_averaging=REHEARSAL_TRAINER.ema_decay is not None,
    )  # fmt: skip
    config = build_config(form, classification=classification)
    return {
        "name": config["name"],
        "seed": config["seed"],
        "tasks": config["tasks"],
        "replay_ratio": float(values.replay_ratio),
        **{key: config[key] for key in ("model", "data", "optimizer", "trainer")},
    }


# ----------------------------------------------------------------------------------------------- scaling study
SCALING_RATIOS = "1, 0.5, 0.25"  # the scaling form's starting keep-ratios


@dataclass
class ScalingValues:
    """What the scaling-study form holds: the task whose training data is thinned, the keep-ratios (text), tasks
    trained alongside with all their data, and the training settings of every run (defaults: the form's starting
    values, as the rehearsal form's)."""

    name: str = "scaling"
    task: str | None = None
    others: list[str] = field(default_factory=list)
    ratios: str = SCALING_RATIOS
    preset: str = REHEARSAL_PRESET
    max_epochs: int = REHEARSAL_TRAINER.max_epochs
    patience: int = REHEARSAL_TRAINER.patience
    batch_size: int = FORM_DATA.batch_size
    lr: float = OptimizerSection.lr
    seed: int = TrainConfig.seed


def parse_ratios(text: str) -> list[float]:
    """``"1, 0.5, 0.25"`` -> ``[1.0, 0.5, 0.25]`` (fractions of the task's training compositions kept, each in
    (0, 1]); raises ValueError with a readable message."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    try:
        ratios = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"Keep-ratios: '{text}' is not a list of numbers (write e.g. 1, 0.5, 0.25).") from None
    if not ratios or any(not 0 < r <= 1 for r in ratios):
        raise ValueError("Keep-ratios: give one or more fractions above 0 and at most 1, e.g. 1, 0.5, 0.25.")
    return sorted(set(ratios), reverse=True)


def validate_scaling(values: ScalingValues) -> list[str]:
    errors = []
    if not values.name.strip():
        errors.append("Give the scaling study a name.")
    if not values.task:
        errors.append("Choose the task whose training data is thinned.")
    try:
        parse_ratios(values.ratios)
    except ValueError as error:
        errors.append(str(error))
    if values.max_epochs < 1:
        errors.append("Train for at least 1 epoch per run.")
    if values.preset not in MLP_PRESETS:
        errors.append(f"Unknown size preset '{values.preset}' (small, medium or large).")
    return errors


def build_scaling_config(values: ScalingValues, classification: Sequence[str] = ()) -> dict[str, Any]:
    """The training-config dict every run of a scaling study uses (``fm scaling --config``): the thinned task
    first, then the others, with the schedule set by hand."""
    tasks = [values.task or "", *[t for t in values.others if t != values.task]]
    form = FormValues(
        name=values.name, bundled=tasks, **encoder_values("mlp", values.preset), schedule=SCHEDULE_HAND,
        max_epochs=values.max_epochs, patience=values.patience, batch_size=values.batch_size, lr=values.lr,
        seed=values.seed,
    )  # fmt: skip
    return build_config(form, classification=classification)
