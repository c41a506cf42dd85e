"""fm_engine: composition -> property multi-task models and inverse design of compositions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fm_engine.checkpoints import LoadedCheckpoint

__version__ = "0.1.0"


def load_checkpoint(path: str | Path, **kwargs: Any) -> LoadedCheckpoint:
    """Load a checkpoint or run directory (see :func:`fm_engine.checkpoints.load_checkpoint`).

    Imported lazily so that ``import fm_engine`` stays light.
    """
    from fm_engine.checkpoints import load_checkpoint as _load

    return _load(path, **kwargs)
