"""The element table: the 94 elements H..Pu x 58 physical features (XenonPy ``elements_completed``).

The table is shipped as ``fm_engine/element_data/element_features.csv`` (built by
``scripts/build_element_table.py``; provenance in ``DATA_SOURCES.md``). Its row order (atomic number)
defines the element axis of every composition weight vector in the package.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

_TABLE_FILE = Path(__file__).resolve().parent / "element_data" / "element_features.csv"


@cache
def _table_bytes() -> bytes:
    return _TABLE_FILE.read_bytes()


@cache
def element_table() -> pd.DataFrame:
    """The element table: index = element symbols (H..Pu), columns = 58 features (float64)."""
    import io

    frame = pd.read_csv(io.BytesIO(_table_bytes()), index_col="symbol").astype(float)
    return frame


@cache
def element_table_hash() -> str:
    """SHA-256 of the shipped table file: stored in descriptor specs so checkpoints detect a changed table."""
    return hashlib.sha256(_table_bytes()).hexdigest()


@cache
def element_symbols() -> tuple[str, ...]:
    """Element symbols in table order (H, He, ..., Pu)."""
    return tuple(element_table().index)


@cache
def element_index() -> dict[str, int]:
    """Symbol -> position on the element axis."""
    return {symbol: i for i, symbol in enumerate(element_symbols())}


def n_elements() -> int:
    return len(element_symbols())


def feature_matrix() -> np.ndarray:
    """The (94, 58) float64 feature matrix, a fresh copy."""
    return element_table().to_numpy(dtype=np.float64, copy=True)
