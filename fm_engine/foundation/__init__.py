"""The foundation encoder: its pretraining corpus (:mod:`fm_engine.foundation.corpus`) and the shipped
foundation checkpoint."""

from __future__ import annotations

from pathlib import Path


def foundation_checkpoint_path() -> Path:
    """Where the shipped foundation checkpoint lives (``fm_engine/foundation_model/``); it may not exist yet:
    callers check."""
    return Path(__file__).resolve().parent.parent / "foundation_model"
