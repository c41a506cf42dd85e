"""The foundation encoder: its pretraining corpus (:mod:`fm_engine.foundation.corpus`, built by
:mod:`fm_engine.foundation.build`) and the shipped checkpoint.

Importing this package is light (no pandas, no torch): the corpus modules are imported where used.
"""

from __future__ import annotations

import os
from pathlib import Path

FOUNDATION_ENV = "FM_FOUNDATION_DIR"  # another foundation folder (a folder without a checkpoint: none installed)

REPLAY_FOLDER = "replay"  # in the shipped foundation: a corpus sample (the corpus format) for fine-tuning replay


def foundation_checkpoint_path() -> Path:
    """Where the foundation checkpoint lives: ``fm_engine/foundation_model/`` (shipped with the package), or the
    folder named by ``FM_FOUNDATION_DIR`` (e.g. a foundation of your own; the test suite points it at a folder
    that does not exist, so its runs start from scratch unless a test asks for the foundation).

    The folder may not exist: callers check (``fm_engine.training.start.foundation_installed``).
    """
    override = os.environ.get(FOUNDATION_ENV, "").strip()
    if override:
        return Path(override).expanduser().resolve()
    return shipped_foundation_path()


def shipped_foundation_path() -> Path:
    """``fm_engine/foundation_model/``: the foundation that ships with the package."""
    return Path(__file__).resolve().parent.parent / "foundation_model"
