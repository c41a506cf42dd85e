"""Self-describing, safe checkpoints.

A checkpoint is a directory::

    checkpoint/
      config.json        format tag, model config (encoder, heads, tasks with units and classes,
                         descriptor spec, target scalers), checkpoint id
      model.safetensors  weights (safetensors: plain tensors, no code is ever executed on load)
      card.json, card.md model card: tasks, units, data, split sizes, test metrics, training time, versions

It is written to a temporary sibling directory and renamed into place, so a killed run never leaves
half a checkpoint. :func:`load_checkpoint` also accepts a run directory (it uses ``<run>/checkpoint``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fm_engine.models import FlexibleMultiTaskModel, ModelConfig

FORMAT = "fm_engine-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
COMPOSITIONS_FILE = "compositions.csv"
TASKS_SEPARATOR = ";"  # between task names in compositions.csv's ``tasks`` column


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, truncated or not ours."""


@dataclass
class LoadedCheckpoint:
    model: FlexibleMultiTaskModel
    path: Path
    checkpoint_id: str
    weights_sha256: str
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def compositions(self) -> pd.DataFrame:
        """The training data's compositions (canonical keys), their split and the tasks they
        are labelled for, ``;``-separated; empty if not recorded."""
        return read_compositions(self.path)


def read_compositions(checkpoint_dir: Path) -> pd.DataFrame:
    """``compositions.csv`` of a checkpoint directory (see :meth:`LoadedCheckpoint.compositions`)."""
    path = checkpoint_dir / COMPOSITIONS_FILE
    if not path.exists():
        return pd.DataFrame(columns=["composition", "split", "tasks"])
    try:
        return pd.read_csv(path, keep_default_na=False)
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: not UTF-8 text (undecodable byte at offset {error.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{path}: cannot be read ({first})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    model: FlexibleMultiTaskModel,
    path: str | Path,
    *,
    card: dict[str, Any] | None = None,
    card_md: str = "",
    compositions: pd.DataFrame | None = None,
) -> Path:
    """Write the checkpoint directory atomically (temp dir + rename); returns its path.

    ``compositions`` (columns ``composition``, ``split`` and ``tasks``) records the training data's
    compositions, so predictions and designed recipes can be compared with what the model has seen.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        checkpoint_id = uuid.uuid4().hex
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "checkpoint_id": checkpoint_id,
            "model": model.config.to_dict(),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        if compositions is not None:
            columns = [c for c in ("composition", "split", "tasks") if c in compositions.columns]
            compositions[columns].to_csv(tmp / COMPOSITIONS_FILE, index=False)
        if card is not None:
            card = {**card, "checkpoint_id": checkpoint_id, "weights_sha256": _sha256(tmp / WEIGHTS_FILE)}
            (tmp / "card.json").write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
            (tmp / "card.md").write_text(card_md, encoding="utf-8")
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{checkpoint_id[:8]}")
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


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
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
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
    try:
        model_config = ModelConfig.from_dict(config["model"])
        model = FlexibleMultiTaskModel(model_config)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory}: the model config cannot be rebuilt ({error})") from None
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{directory}: {WEIGHTS_FILE} is corrupt or truncated ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{directory}: weights do not match the model config ({first})") from None
    model.eval()
    card: dict[str, Any] = {}
    card_path = directory / "card.json"
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            card = {}  # the card only describes the model; an unreadable one is left out
        if not isinstance(card, dict):
            card = {}
    return LoadedCheckpoint(
        model=model,
        path=directory,
        checkpoint_id=str(config.get("checkpoint_id", "")),
        weights_sha256=_sha256(weights),
        card=card,
    )
