"""fm_engine: composition -> property multi-task models and inverse design of compositions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fm_engine.checkpoints import LoadedCheckpoint

__version__ = "0.1.0"


def _prepare_threads() -> None:
    """OpenMP reads its wait policy once, when torch loads it: set it before anything imports torch
    (see fm_engine.threads; ``FM_THREAD_POLICY=off`` keeps torch's defaults)."""
    from contextlib import suppress

    from fm_engine.threads import prepare_environment

    with suppress(ValueError):  # a bad FM_THREAD_POLICY is reported where the policy is applied
        prepare_environment()


_prepare_threads()


def load_checkpoint(path: str | Path, **kwargs: Any) -> LoadedCheckpoint:
    """Load a checkpoint or run directory (see :func:`fm_engine.checkpoints.load_checkpoint`).

    Imported lazily so that ``import fm_engine`` stays light.
    """
    from fm_engine.checkpoints import load_checkpoint as _load

    return _load(path, **kwargs)
