"""The foundation encoder: its pretraining corpus (:mod:`fm_engine.foundation.corpus`, built by
:mod:`fm_engine.foundation.build`) and the shipped checkpoint.

Importing this package is light (no pandas, no torch): the corpus modules are imported where used.
"""

from __future__ import annotations

from pathlib import Path


def foundation_checkpoint_path() -> Path:
    """Where the shipped foundation checkpoint lives (``fm_engine/foundation_model/``).

    The folder may not exist yet (until a foundation is built and shipped): callers check.
    """
    return Path(__file__).resolve().parent.parent / "foundation_model"
