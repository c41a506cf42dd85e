"""Reading tables users upload in the browser (CSV bytes) and guessing their composition column."""

from __future__ import annotations

import io
from collections.abc import Iterable

import pandas as pd

from fm_engine.compositions import COMPOSITION_COLUMN_NAMES

EMPTY = "The file is empty: upload a CSV with a header row and one composition per row."


def read_csv_bytes(data: bytes) -> tuple[pd.DataFrame | None, str]:
    """Read an uploaded CSV; returns (table, "") or (None, a message saying what is wrong)."""
    if not data or not data.strip():
        return None, EMPTY
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except pd.errors.EmptyDataError:
        return None, EMPTY
    except pd.errors.ParserError as error:
        return None, f"Malformed CSV: {str(error).strip()}"
    except (UnicodeDecodeError, ValueError) as error:
        return None, f"The file cannot be read as CSV: {error}"
    if frame.empty:
        return None, "The CSV has a header but no rows."
    frame.columns = [str(c) for c in frame.columns]
    return frame, ""


def guess_column(
    columns: list[str], guesses: Iterable[str] = COMPOSITION_COLUMN_NAMES, *, exclude: Iterable[str] = ()
) -> int:
    """Index of the first column named like one of ``guesses`` (case-insensitive), else the first allowed one."""
    excluded = set(exclude)
    lowered = [str(c).strip().lower() for c in columns]
    for guess in guesses:
        if guess in lowered and columns[lowered.index(guess)] not in excluded:
            return lowered.index(guess)
    return next((i for i, c in enumerate(columns) if c not in excluded), 0)
