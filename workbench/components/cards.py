"""Model cards of workspace runs, read for display."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_card(run: Path) -> tuple[dict[str, Any], str]:
    """The card.json of a run's checkpoint, or ({}, reason) when it is missing or unreadable."""
    path = Path(run) / "checkpoint" / "card.json"
    if not path.exists():
        return {}, "no model card (card.json) in this checkpoint"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return {}, f"the model card is unreadable ({error})"
    if not isinstance(card, dict):
        return {}, "the model card is not a JSON object"
    return card, ""
