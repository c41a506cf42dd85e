"""Self-describing, safe checkpoints.

A checkpoint is a directory::

    checkpoint/
      config.json        format tag, model config (encoder, heads, tasks with units and classes,
                         descriptor spec, target scalers), checkpoint id
      model.safetensors  weights (safetensors: plain tensors, no code is ever executed on load)
      card.json, card.md model card: tasks, units, data, split sizes, test metrics, training time, versions
      members/<k>/       an ensemble's members 1..N-1 (config.json + model.safetensors each); the top-level
                         model is member 0, and config.json's ``ensemble`` section lists the member folders

It is written to a temporary sibling directory (every file fsynced) and renamed into place, so a killed
run never leaves half a checkpoint; a writer killed between the two renames of a replacement is repaired by
the next save. :func:`load_checkpoint` also accepts a run directory (it uses ``<run>/checkpoint``).

Loading checks the numbers before anything is predicted: every weight tensor must be finite and have the
shape the config implies, every number in the config must be finite, every scale (``std``, ``t_std``)
positive, and the descriptor must give ``input_dim`` features; otherwise :class:`CheckpointError` names
the tensor or key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fm_engine.calibration import UNCALIBRATED_NOTE, SpreadScale
from fm_engine.cards import CARD_FILE, CARD_MARKDOWN_FILE, CheckpointError, ModelCard, read_card
from fm_engine.descriptors import Descriptor
from fm_engine.models import FlexibleMultiTaskModel, ModelConfig
from fm_engine.safe_io import atomic_path, atomic_write_json, atomic_write_text, file_sha256, sync_folder

FORMAT = "fm_engine-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
COMPOSITIONS_FILE = "compositions.csv"
MEMBERS_DIR = "members"  # an ensemble's members 1..N-1: members/1, members/2, ...
COMPRESSED_COMPOSITIONS_FILE = "compositions.csv.gz"  # the same table, gzip-compressed (large training sets)
COMPRESS_ABOVE_ROWS = 50_000  # a checkpoint with more training compositions writes the compressed file
END_OF_RUN_GZIP_LEVEL = 6  # a run's checkpoint: half the CPU time of level 9 for ~6 % more bytes (ship uses 9)
TASKS_SEPARATOR = ";"  # between task names in compositions.csv's ``tasks`` column


__all__ = ["CheckpointError", "LoadedCheckpoint", "load_checkpoint", "save_checkpoint"]


@dataclass
class LoadedCheckpoint:
    """A loaded model with its checkpoint's identity and model card; :meth:`predict` is the one-call API.

    ``card`` is None when the checkpoint has no model card or an unreadable one (``card_problem`` says why):
    the card only describes the model, so the model still predicts."""

    model: FlexibleMultiTaskModel
    path: Path
    checkpoint_id: str
    weights_sha256: str
    card: ModelCard | None = None
    card_problem: str = ""
    # An ensemble's members (``members[0]`` is ``model``, which carries the ensemble's decision thresholds);
    # empty for a single model. Predictions are the members' mean with their standard deviation.
    members: list[FlexibleMultiTaskModel] = field(default_factory=list)
    # An ensemble's calibration (fitted on the validation split, see :mod:`fm_engine.calibration`): task -> factor a
    # and task -> floor b (the task's unit) of every ``_std`` = sqrt((a * std)^2 + b^2); tasks not listed
    # (classification, or every task of an ensemble saved before calibration existed) keep a = 1, b = 0.
    std_factors: dict[str, float] = field(default_factory=dict)
    std_floors: dict[str, float] = field(default_factory=dict)

    @property
    def spread_scales(self) -> dict[str, SpreadScale]:
        """Task -> its calibration of the spread (tasks not listed: ``SpreadScale()``, a = 1, b = 0)."""
        return {task: SpreadScale(a=a, b=self.std_floors.get(task, 0.0)) for task, a in self.std_factors.items()}

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def calibration_note(self) -> str:
        """Why an ensemble's spread is not calibrated ('' for a calibrated ensemble or a single model)."""
        return UNCALIBRATED_NOTE if self.is_ensemble and not self.std_factors else ""

    @property
    def is_ensemble(self) -> bool:
        """True for a checkpoint of two or more members (its predictions have ``_std`` columns)."""
        return len(self.members) > 1

    @property
    def models(self) -> list[FlexibleMultiTaskModel]:
        """Every member model (a single model: ``[model]``)."""
        return list(self.members) or [self.model]

    def predict(
        self,
        formulas: Sequence[str] | pd.Series | pd.DataFrame,
        *,
        t_grid: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
        composition_column: str | None = None,
        distances: bool = True,
    ) -> pd.DataFrame:
        """Predictions in physical units, one row per composition, with the columns of ``fm predict``'s output
        (an ensemble: the members' mean, and its spread in ``_std`` columns).

        ``formulas``: formulas (a list or Series gives a ``composition`` column), or a table whose composition
        column (``composition_column``, default: found by name) is predicted; its other columns are kept.
        ``t_grid``: the ``t`` values (in the task's ``t_unit``) of every sequence task, or a mapping
        task -> values; default: evenly spaced over each task's training range. ``distances``: add the
        distance-to-training columns and ``extrapolated_for``. A bad formula gives an ``error`` row, never
        an exception; a bad ``t_grid`` or a missing composition column raises ``ValueError``.
        """
        from fm_engine.predict import predict_frame, sequence_grids

        frame = formulas if isinstance(formulas, pd.DataFrame) else pd.DataFrame({"composition": list(formulas)})
        grids = sequence_grids(self.model, t_grid)
        return predict_frame(self, frame, composition_column=composition_column, t_grids=grids, distances=distances)

    def compositions(self) -> pd.DataFrame:
        """The training data's compositions (canonical keys), their split and the tasks they
        are labelled for, ``;``-separated; empty if not recorded."""
        return read_compositions(self.path)


def compositions_file(checkpoint_dir: Path) -> Path | None:
    """The checkpoint's training-composition table: ``compositions.csv``, or ``compositions.csv.gz`` (written
    instead above :data:`COMPRESS_ABOVE_ROWS` rows: 404k corpus rows take 48 MB as text, 2 MB compressed);
    None if it has neither."""
    for name in (COMPOSITIONS_FILE, COMPRESSED_COMPOSITIONS_FILE):
        if (Path(checkpoint_dir) / name).is_file():
            return Path(checkpoint_dir) / name
    return None


def read_compositions(checkpoint_dir: Path) -> pd.DataFrame:
    """``compositions.csv`` (or ``.csv.gz``) of a checkpoint directory (see :meth:`LoadedCheckpoint.compositions`)."""
    path = compositions_file(checkpoint_dir)
    if path is None:
        return pd.DataFrame(columns=["composition", "split", "tasks"])
    try:
        return pd.read_csv(path, keep_default_na=False)
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: not UTF-8 text (undecodable byte at offset {error.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{path}: cannot be read ({first})") from None


def write_compositions(
    table: pd.DataFrame, checkpoint_dir: Path, *, compress: bool | None = None, level: int = 9
) -> Path:
    """Write a checkpoint's training-composition table, gzip-compressed if ``compress`` (None: above
    :data:`COMPRESS_ABOVE_ROWS` rows) at gzip ``level``, with a fixed gzip header time so the same table gives
    the same bytes; returns the file written."""
    compress = len(table) > COMPRESS_ABOVE_ROWS if compress is None else compress
    name = COMPRESSED_COMPOSITIONS_FILE if compress else COMPOSITIONS_FILE
    with atomic_path(Path(checkpoint_dir) / name) as path:
        compression = {"method": "gzip", "compresslevel": level, "mtime": 0} if name.endswith(".gz") else None
        table.to_csv(path, index=False, compression=compression)
    return Path(checkpoint_dir) / name


def _shape(shape: torch.Size | tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def check_finite_tensors(state: Mapping[str, torch.Tensor], where: str) -> None:
    """``CheckpointError`` naming the first floating-point tensor that holds NaN or inf values."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{where}: tensor '{name}' holds {bad} NaN/inf value(s) (expected finite weights); "
                "the model cannot give meaningful predictions"
            )


def check_config_numbers(value: object, where: str, key: str = "model") -> None:
    """``CheckpointError`` naming the first config key whose number is NaN or inf, or whose scale
    (``std``, ``t_std``) is not positive."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            check_config_numbers(item, where, f"{key}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_config_numbers(item, where, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"{where}: {CONFIG_FILE} key {key} is {value} (expected a finite number)")
    if isinstance(value, int | float) and not isinstance(value, bool) and ".scalers." in key:
        scale = key.rsplit(".", 1)[-1].split("[")[0]
        if scale in ("std", "t_std") and value <= 0:
            raise CheckpointError(f"{where}: {CONFIG_FILE} key {key} is {value} (a scale must be > 0)")


def check_state_matches(state: Mapping[str, torch.Tensor], model: torch.nn.Module, where: str) -> None:
    """``CheckpointError`` naming a tensor that is missing, unexpected or shaped unlike the config implies."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointError(
                f"{where}: {CONFIG_FILE} does not match {WEIGHTS_FILE}: tensor '{name}' {_shape(tensor.shape)} "
                "implied by the config is missing from the weights"
            )
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: {CONFIG_FILE} does not match {WEIGHTS_FILE}: tensor '{name}' has shape "
                f"{_shape(state[name].shape)} in the weights but {_shape(tensor.shape)} from the config"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(
            f"{where}: {CONFIG_FILE} does not match {WEIGHTS_FILE}: tensor '{extra[0]}' "
            f"{_shape(state[extra[0]].shape)} in the weights has no place in the config"
        )


def _recover_interrupted(path: Path) -> None:
    """Repair what a writer killed midway left beside ``path``: put back a checkpoint that was moved aside
    but never replaced, then remove temporary and old copies."""
    olds = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not path.exists() and olds:
        olds.pop().rename(path)
    for leftover in [*olds, *path.parent.glob(f".{path.name}.tmp-*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def install_directory(tmp: Path, path: Path, *, tag: str) -> None:
    """Move the complete directory ``tmp`` onto ``path`` (replacing it), folders fsynced."""
    sync_folder(tmp)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{tag}")
        path.rename(old)
    tmp.rename(path)
    sync_folder(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def copy_checkpoint(source: str | Path, path: str | Path) -> Path:
    """Copy a checkpoint directory onto ``path`` atomically (every file fsynced, then one rename)."""
    source, path = Path(source), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        for file in sorted(source.rglob("*")):  # an ensemble's members/<k>/ folders too
            if file.is_file():
                (tmp / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(tmp / file.relative_to(source)) as target:
                    shutil.copyfile(file, target)
        for folder in sorted(p for p in tmp.rglob("*") if p.is_dir()):
            sync_folder(folder)
        install_directory(tmp, path, tag=uuid.uuid4().hex[:8])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def save_checkpoint(
    model: FlexibleMultiTaskModel,
    path: str | Path,
    *,
    card: ModelCard | None = None,
    compositions: pd.DataFrame | None = None,
    members: Sequence[FlexibleMultiTaskModel] = (),
    std_factors: Mapping[str, float | SpreadScale] | None = None,
) -> Path:
    """Write the checkpoint directory atomically (temp dir, files fsynced, rename); returns its path.

    ``members``: an ensemble's other members (``model`` is member 0), written to ``members/1`` ...; the
    ensemble's decision thresholds are ``model``'s; ``std_factors``: its calibration (task -> ``SpreadScale`` or a
    factor a with b = 0; config.json key ``ensemble.std_factors``, task -> {a, b}; see :mod:`fm_engine.calibration`).

    Refuses (``CheckpointError``) weights or scalers that are not finite: such a checkpoint could only
    predict NaN. ``card`` is written as ``card.json`` and ``card.md`` with the new checkpoint's id and weights
    hash filled in. ``compositions`` (columns ``composition``, ``split`` and ``tasks``) records the training data's
    compositions, so predictions and designed recipes can be compared with what the model has seen.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        checkpoint_id = uuid.uuid4().hex
        folders = [f"{MEMBERS_DIR}/{k}" for k in range(1, len(members) + 1)]
        extra = {"ensemble": {"members": len(members) + 1, "folders": folders}} if members else {}
        if members and std_factors is not None:
            scales = {t: v if isinstance(v, SpreadScale) else SpreadScale(a=v) for t, v in std_factors.items()}
            stored = {task: {"a": float(v.a), "b": float(v.b)} for task, v in scales.items()}
            check_std_factors(stored, model, f"not saving {path}")
            extra["ensemble"]["std_factors"] = stored
        _write_model(model, tmp, checkpoint_id=checkpoint_id, where=path, extra=extra)
        for k, (member, folder) in enumerate(zip(members, folders, strict=True), start=1):
            (tmp / folder).mkdir(parents=True)
            _write_model(member, tmp / folder, checkpoint_id=f"{checkpoint_id}-{k}", where=path / folder)
            sync_folder(tmp / folder)
        if members:
            sync_folder(tmp / MEMBERS_DIR)
        if compositions is not None:
            columns = [c for c in ("composition", "split", "tasks") if c in compositions.columns]
            write_compositions(compositions[columns], tmp, level=END_OF_RUN_GZIP_LEVEL)
        if card is not None:
            card = dataclasses.replace(
                card, checkpoint_id=checkpoint_id, weights_sha256=file_sha256(tmp / WEIGHTS_FILE)
            )
            atomic_write_json(tmp / CARD_FILE, card.to_mapping(), sort_keys=False)
            atomic_write_text(tmp / CARD_MARKDOWN_FILE, card.render_markdown())
        install_directory(tmp, path, tag=checkpoint_id[:8])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_model(
    model: FlexibleMultiTaskModel, folder: Path, *, checkpoint_id: str, where: Path, extra: dict | None = None
) -> None:
    """``model.safetensors`` and ``config.json`` of one model into ``folder``; refuses (``CheckpointError``)
    weights or scalers that are not finite (``where`` names the checkpoint in the message)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    model_config = model.config.to_dict()
    check_finite_tensors(state, f"not saving {where}")
    check_config_numbers(model_config, f"not saving {where}")
    with atomic_path(folder / WEIGHTS_FILE) as weights:
        save_file(state, str(weights), metadata={"format": FORMAT})
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "checkpoint_id": checkpoint_id,
              "model": model_config} | (extra or {})  # fmt: skip
    atomic_write_json(folder / CONFIG_FILE, config, sort_keys=False)


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory holding ``checkpoint/``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    if path.is_file():
        raise CheckpointError(
            f"{path.name}: not an fm_engine checkpoint (expected a directory with {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}); pickled model files are never loaded"
        )
    if (path / CONFIG_FILE).exists():
        return path
    if (path / "checkpoint" / CONFIG_FILE).exists():
        return path / "checkpoint"
    if (path / "status.json").exists():
        raise CheckpointError(f"{path}: this run has no checkpoint yet (still training, cancelled or failed)")
    raise CheckpointError(f"{path}: not an fm_engine checkpoint (no {CONFIG_FILE})")


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from a checkpoint (or run) directory; never unpickles anything.

    Raises :class:`CheckpointError` (a ``ValueError``) with a clear message for a missing, corrupt,
    truncated or foreign checkpoint.
    """
    directory = resolve_checkpoint_dir(path)
    config, model, weights = _load_model(directory, map_location=map_location)
    members = [model] + [_load_model(folder, map_location=map_location)[1]
                         for folder in ensemble_folders(directory, config)]  # fmt: skip
    for folder, member in zip(ensemble_folders(directory, config), members[1:], strict=True):
        check_same_outputs(model, member, f"{directory}: ensemble member {folder.relative_to(directory)}")
    card, problem = None, ""
    try:
        card = read_card(directory)
    except CheckpointError as error:  # the card only describes the model; an unreadable one is left out
        problem = str(error)
    scales = stored_std_factors(directory, config, model) if len(members) > 1 else {}
    return LoadedCheckpoint(
        model=model,
        path=directory,
        checkpoint_id=str(config.get("checkpoint_id", "")),
        weights_sha256=file_sha256(weights),
        card=card,
        card_problem=problem,
        members=members if len(members) > 1 else [],
        std_factors={task: scale.a for task, scale in scales.items()},
        std_floors={task: scale.b for task, scale in scales.items() if scale.b > 0},
    )


def stored_std_factors(
    directory: Path, config: Mapping[str, object], model: FlexibleMultiTaskModel
) -> dict[str, SpreadScale]:
    """An ensemble checkpoint's ``ensemble.std_factors``: task -> {a, b}, or task -> a number (stored before the
    floor existed: a = number, b = 0); none stored: {} (every task a = 1, b = 0)."""
    section = config.get("ensemble")
    factors = section.get("std_factors") if isinstance(section, Mapping) else None
    if factors is None:
        return {}
    if not isinstance(factors, Mapping):
        raise CheckpointError(f"{directory}: {CONFIG_FILE} key ensemble.std_factors: expected task -> {{a, b}}")
    check_std_factors(factors, model, str(directory))
    return {
        str(task): SpreadScale(a=float(value["a"]), b=float(value["b"])) if isinstance(value, Mapping)
        else SpreadScale(a=float(value))
        for task, value in factors.items()
    }  # fmt: skip


def check_std_factors(factors: Mapping[str, object], model: FlexibleMultiTaskModel, where: str) -> None:
    """``CheckpointError`` unless every entry is of one of ``model``'s tasks and is either a finite number > 0 (the
    factor a of a checkpoint saved before the floor existed) or a mapping with exactly ``a`` and ``b``, finite
    numbers >= 0, not both 0."""

    def number(value: object) -> bool:
        return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)

    for task, value in factors.items():
        key = f"{CONFIG_FILE} key ensemble.std_factors.{task}"
        if task not in model.tasks:
            raise CheckpointError(f"{where}: {key}: no such task (tasks: {', '.join(model.tasks)})")
        if isinstance(value, Mapping):
            if set(value) != {"a", "b"}:
                raise CheckpointError(f"{where}: {key} has keys {sorted(map(str, value))} (expected exactly a and b)")
            for name in ("a", "b"):
                if not number(value[name]) or value[name] < 0:
                    raise CheckpointError(f"{where}: {key}.{name} is {value[name]!r} (expected a finite number >= 0)")
            if value["a"] == 0 and value["b"] == 0:
                raise CheckpointError(f"{where}: {key}: a and b are both 0 (expected a > 0 or b > 0)")
        elif not number(value) or value <= 0:
            raise CheckpointError(f"{where}: {key} is {value!r} (expected {{a, b}} or a finite number > 0)")


def ensemble_folders(directory: Path, config: Mapping[str, object]) -> list[Path]:
    """The member folders an ensemble checkpoint's ``config.json`` lists (``members/1`` ...); none for a single
    model. ``CheckpointError`` for a section that is not a list of ``members/<k>`` folders inside ``directory``."""
    section = config.get("ensemble")
    if section is None:
        return []
    folders = section.get("folders") if isinstance(section, Mapping) else None
    expected = [f"{MEMBERS_DIR}/{k}" for k in range(1, len(folders) + 1)] if isinstance(folders, list) else None
    if not folders or folders != expected:
        raise CheckpointError(
            f"{directory}: {CONFIG_FILE} key ensemble.folders: expected the member folders "
            f"{MEMBERS_DIR}/1, {MEMBERS_DIR}/2, ..., got {folders!r}"
        )
    return [directory / folder for folder in folders]


def check_same_outputs(model: FlexibleMultiTaskModel, member: FlexibleMultiTaskModel, where: str) -> None:
    """``CheckpointError`` unless ``member`` predicts the same tasks (names, types, classes, units) from the same
    descriptor as ``model``: only then can their predictions be averaged."""

    def outputs(m: FlexibleMultiTaskModel) -> list[tuple]:
        return [(t.name, t.type.value, tuple(t.classes or ()), t.unit, t.t_unit) for t in m.tasks.values()]

    if outputs(member) != outputs(model):
        raise CheckpointError(f"{where}: predicts other tasks than member 0 ({', '.join(member.tasks)} vs "
                              f"{', '.join(model.tasks)}); an ensemble's members share their tasks")  # fmt: skip
    if member.config.descriptor != model.config.descriptor:
        raise CheckpointError(f"{where}: uses another descriptor than member 0")


def _load_model(
    directory: Path, *, map_location: str | torch.device = "cpu"
) -> tuple[dict, FlexibleMultiTaskModel, Path]:
    """One model folder (``config.json`` + ``model.safetensors``), every check of :func:`load_checkpoint` made:
    its config mapping, the model (eval mode) and the weights file."""
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: {CONFIG_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{directory}: {CONFIG_FILE} is corrupt ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{directory}: {CONFIG_FILE} is not an fm_engine checkpoint config")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory}: checkpoint format version {config.get('format_version')} is not supported "
            f"(this fm_engine reads version {FORMAT_VERSION})"
        )
    weights = directory / WEIGHTS_FILE
    if not weights.exists():
        raise CheckpointError(f"{directory}: {WEIGHTS_FILE} is missing")
    check_config_numbers(config.get("model"), str(directory))
    try:
        model_config = ModelConfig.from_dict(config["model"])
        model = FlexibleMultiTaskModel(model_config)
        n_features = Descriptor(model_config.descriptor).dim
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        raise CheckpointError(f"{directory}: the model config cannot be rebuilt ({error})") from None
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{directory}: {WEIGHTS_FILE} is corrupt or truncated ({error})") from None
    check_state_matches(state, model, str(directory))
    if n_features != model_config.input_dim:
        raise CheckpointError(
            f"{directory}: {CONFIG_FILE} key model.input_dim is {model_config.input_dim} but its descriptor "
            f"gives {n_features} features"
        )
    check_finite_tensors(state, f"{directory}: {WEIGHTS_FILE}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{directory}: weights do not match the model config ({first})") from None
    model.eval()
    return config, model, weights
