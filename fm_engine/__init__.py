"""fm_engine: composition -> property multi-task models and inverse design of compositions.

The public API (imported on first use, so that ``import fm_engine`` stays light)::

    checkpoint = fm_engine.load_checkpoint("runs/demo")    # a LoadedCheckpoint
    table = checkpoint.predict(["Al0.3CoCrFeNi", "Fe2O3"])  # a DataFrame with the columns of `fm predict`
    checkpoint.card                                          # its ModelCard (tasks, units, test metrics, ...)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fm_engine.cards import CheckpointError, ModelCard
    from fm_engine.checkpoints import LoadedCheckpoint, load_checkpoint

__version__ = "0.1.0"

_PUBLIC = {
    "CheckpointError": "fm_engine.cards",
    "LoadedCheckpoint": "fm_engine.checkpoints",
    "ModelCard": "fm_engine.cards",
    "load_checkpoint": "fm_engine.checkpoints",
}
__all__ = ["CheckpointError", "LoadedCheckpoint", "ModelCard", "__version__", "load_checkpoint"]


def _prepare_threads() -> None:
    """OpenMP reads its wait policy once, when torch loads it: set it before anything imports torch
    (see fm_engine.threads; ``FM_THREAD_POLICY=off`` keeps torch's defaults)."""
    from contextlib import suppress

    from fm_engine.threads import prepare_environment

    with suppress(ValueError):  # a bad FM_THREAD_POLICY is reported where the policy is applied
        prepare_environment()


_prepare_threads()


def __getattr__(name: str) -> Any:
    """The public API's objects themselves (same signatures and docstrings), imported on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'fm_engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
