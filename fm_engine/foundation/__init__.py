"""The foundation encoder: its pretraining corpus (:mod:`fm_engine.foundation.corpus`, built by
:mod:`fm_engine.foundation.build`) and the shipped checkpoint.

Importing this package is light (no pandas, no torch): the corpus modules are imported where used.
"""

from __future__ import annotations

import os
from pathlib import Path

FOUNDATION_ENV = "FM_FOUNDATION_DIR"  # another foundation checkpoint than the shipped one (tests, your own)
SHIPPED_FOUNDATION = Path(__file__).resolve().parent.parent / "foundation_model"
REPLAY_FOLDER = "replay"  # in the shipped foundation: a corpus sample (the corpus format) for fine-tuning replay


def foundation_checkpoint_path() -> Path:
    """Where the foundation checkpoint lives: the shipped ``fm_engine/foundation_model/``, or the folder named by
    ``$FM_FOUNDATION_DIR`` when that is set (a checkpoint folder, or a run folder whose ``checkpoint/`` is used:
    e.g. your own ``fm pretrain`` run; tests point it at a tiny foundation, or at an empty folder for none).

    The folder may not exist (until a foundation is built and shipped): callers check, e.g. with
    :func:`foundation_installed`.
    """
    explicit = os.environ.get(FOUNDATION_ENV, "").strip()
    if not explicit:
        return SHIPPED_FOUNDATION
    path = Path(explicit).expanduser().resolve()
    return path / "checkpoint" if (path / "checkpoint" / "config.json").is_file() else path


def foundation_installed() -> bool:
    """True when the foundation checkpoint exists (its ``config.json`` in :func:`foundation_checkpoint_path`)."""
    return (foundation_checkpoint_path() / "config.json").is_file()
