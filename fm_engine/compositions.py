"""Chemical compositions: parsing, atomic fractions, canonical keys and weight vectors.

Accepted inputs: formula strings with integer or fractional amounts (``Fe2O3``, ``Al0.65Cu0.2Fe0.15``),
parentheses (``Ca3(PO4)2``), space-separated forms (``Al0.25 Co1 Fe1 Ni1``), ``{symbol: amount}``
dicts and pymatgen ``Composition`` objects. All amounts are atomic (mole) amounts; fractions are atomic
fractions summing to 1. Formulas without brackets may write amounts in scientific notation
(``Fe1e-3Ni0.999``, ``Al2.5E1``); a decimal comma (``Fe0,5``) is refused with a hint to write ``0.5``.

Bad input raises ``ValueError`` whose message names the text and the reason. Every weight vector this
module returns is finite, non-negative and sums to 1: amounts whose sum overflows (``1e308`` twice) or
that underflow to zero are refused, so no such composition ever reaches a model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element

from fm_engine.elements import element_index, element_symbols

COMPOSITION_COLUMN_NAMES = ("composition", "formula", "compositions", "formulas", "alloy", "material")

KEY_DECIMALS = 6
"""Atomic fractions are rounded to this many decimals in canonical keys."""

CompositionLike = str | Mapping[str, float] | Composition

# An element symbol directly followed by an explicit zero amount, e.g. "Fe0O3" or "Fe0.0 Ni1".
_ZERO_AMOUNT = re.compile(r"([A-Z][a-z]?)\s*0+(?:\.0*)?(?![\d.])")
# An amount: 2, 0.5, .5, 2., optionally in scientific notation (1e-3, 2.5E+2). No element symbol is "E" or
# starts with "e", so an "e"/"E" right after digits can only be an exponent.
_AMOUNT = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# Fast path for flat formulas without brackets: "Al0.65Cu0.2Fe0.15", "Al0.25 Co1 Fe1 Ni1", "Fe1e-3Ni1".
_FLAT_TOKEN = re.compile(rf"\s*([A-Z][a-z]?)\s*({_AMOUNT})?")
_FLAT_FORMULA = re.compile(rf"^(?:\s*[A-Z][a-z]?\s*(?:{_AMOUNT})?)+\s*$")
_EXPONENT = re.compile(r"[\d.][eE][+-]?\d")
_DECIMAL_COMMA = re.compile(r"\d,\d+")


def _describe(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 80 else text[:77] + "...'"


def _check_amounts(amounts: Mapping[str, float], value: object) -> dict[str, float]:
    """Validate symbol -> amount pairs against the element table; return plain floats."""
    if not amounts:
        raise ValueError(f"{_describe(value)}: no elements in composition")
    index = element_index()
    checked: dict[str, float] = {}
    for symbol, amount in amounts.items():
        symbol = str(symbol)
        if symbol not in index:
            if Element.is_valid_symbol(symbol):
                raise ValueError(f"{_describe(value)}: element {symbol} is outside the element table (H..Pu supported)")
            raise ValueError(f"{_describe(value)}: unknown element '{symbol}'")
        try:
            amount = float(amount)
        except (TypeError, ValueError):
            raise ValueError(f"{_describe(value)}: amount of {symbol} is not a number ({amount!r})") from None
        if not math.isfinite(amount):
            raise ValueError(f"{_describe(value)}: amount of {symbol} is not finite")
        if amount < 0:
            raise ValueError(f"{_describe(value)}: negative amount of {symbol} ({amount:g})")
        if amount == 0:
            raise ValueError(f"{_describe(value)}: zero amount of {symbol}")
        checked[symbol] = checked.get(symbol, 0.0) + amount
    total = sum(checked.values())
    if not math.isfinite(total):
        raise ValueError(
            f"{_describe(value)}: the amounts are too large (their sum exceeds {np.finfo(np.float64).max:.3g}); "
            "scale them down, only their ratios matter"
        )
    return checked


def _parse_string(text: str) -> dict[str, float]:
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{_describe(text)}: empty formula")
    comma = _DECIMAL_COMMA.search(stripped)
    if comma:
        point = comma.group(0).replace(",", ".")
        raise ValueError(f"{_describe(text)}: decimal comma in '{comma.group(0)}': write {point} (with a point)")
    zero = _ZERO_AMOUNT.search(stripped)
    if zero:
        raise ValueError(f"{_describe(text)}: zero amount of {zero.group(1)}")
    if _FLAT_FORMULA.match(stripped):
        amounts: dict[str, float] = {}
        for symbol, amount in _FLAT_TOKEN.findall(stripped):
            number = float(amount) if amount else 1.0
            if number == 0.0:  # "1e-400": not written as zero (caught above), but below the smallest float
                raise ValueError(f"{_describe(text)}: amount {amount} of {symbol} is too small (it underflows to 0)")
            if not math.isfinite(number):
                raise ValueError(f"{_describe(text)}: amount {amount} of {symbol} is too large (not a finite number)")
            amounts[symbol] = amounts.get(symbol, 0.0) + number
            if not math.isfinite(amounts[symbol]):
                raise ValueError(f"{_describe(text)}: the amounts of {symbol} are too large (their sum overflows)")
        return amounts
    if _EXPONENT.search(stripped):
        raise ValueError(
            f"{_describe(text)}: scientific notation is only read in formulas without brackets; "
            "expand the brackets or write the amount as a decimal"
        )
    if "-" in stripped and re.search(r"-\s*\d", stripped):
        raise ValueError(f"{_describe(text)}: negative amount")
    try:
        composition = Composition(stripped)
    except Exception as error:  # pymatgen raises ValueError, sometimes other types, for garbage
        raise ValueError(f"{_describe(text)}: not a chemical formula ({error})") from None
    # pymatgen accepts unknown symbols as dummy species ("Xx2"): report them by name.
    return {str(getattr(el, "symbol", el)): amount for el, amount in composition.get_el_amt_dict().items()}


def parse_amounts(value: CompositionLike) -> dict[str, float]:
    """Parse a composition into validated ``{symbol: atomic amount}`` (amounts as written, not normalised)."""
    if isinstance(value, Composition):
        raw = value.get_el_amt_dict()
    elif isinstance(value, Mapping):
        raw = {str(k): v for k, v in value.items() if v is not None}
    elif isinstance(value, str):
        raw = _parse_string(value)
    else:
        raise ValueError(f"{_describe(value)}: expected a formula string, dict or Composition")
    return _check_amounts(raw, value)


def atomic_fractions(value: CompositionLike) -> dict[str, float]:
    """Atomic fractions ``{symbol: x}`` summing to 1, elements in alphabetical order."""
    return _fractions(parse_amounts(value), value)


def _fractions(amounts: Mapping[str, float], value: object) -> dict[str, float]:
    """Atomic fractions of validated amounts (see :func:`parse_amounts`), alphabetical."""
    total = sum(amounts.values())
    fractions = {symbol: amounts[symbol] / total for symbol in sorted(amounts)}
    if not all(math.isfinite(x) for x in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        # Only reachable with extreme amounts (e.g. subnormal numbers): refuse rather than guess.
        raise ValueError(f"{_describe(value)}: the amounts do not give finite atomic fractions summing to 1")
    return fractions


def _format_number(x: float, decimals: int) -> str:
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return text or "0"


def key_from_fractions(fractions: Mapping[str, float]) -> str:
    """Canonical key of atomic fractions (assumed normalised): sorted symbols, rounded fractions."""
    parts = []
    for symbol in sorted(fractions):
        amount = round(float(fractions[symbol]), KEY_DECIMALS)
        if amount > 0:
            parts.append(f"{symbol}{_format_number(amount, KEY_DECIMALS)}")
    return "".join(parts)


def _key_from_amounts(amounts: Mapping[str, float]) -> str:
    total = sum(amounts.values())
    # Amounts that already sum to 1 within rounding (e.g. a key parsed back) are not renormalised,
    # so that canonical_key(canonical_key(x)) == canonical_key(x).
    if abs(total - 1.0) <= 10 * len(amounts) * 10.0**-KEY_DECIMALS:
        total = 1.0
    return key_from_fractions({symbol: amount / total for symbol, amount in amounts.items()})


def canonical_key(value: CompositionLike) -> str:
    """A key for joining tables: reduced fractional composition, alphabetical elements, rounded fractions.

    ``Fe2O3``, ``Fe4O6`` and ``O3Fe2`` all give ``Fe0.4O0.6``.
    """
    return _key_from_amounts(parse_amounts(value))


def to_weights(value: CompositionLike) -> np.ndarray:
    """Atomic-fraction weight vector over the element table (length 94, sums to 1)."""
    index = element_index()
    weights = np.zeros(len(index), dtype=np.float64)
    for symbol, fraction in atomic_fractions(value).items():
        weights[index[symbol]] = fraction
    return weights


def weights_to_fractions(weights: Sequence[float] | np.ndarray, *, threshold: float = 0.0) -> dict[str, float]:
    """Weight vector over the element table -> ``{symbol: atomic fraction}``, largest first.

    Entries ``<= threshold`` are dropped and the rest renormalised to sum to 1.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    symbols = element_symbols()
    if w.shape[0] != len(symbols):
        raise ValueError(f"weight vector has length {w.shape[0]}, expected {len(symbols)} (H..Pu)")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weight vector must be finite and non-negative")
    keep = np.flatnonzero(w > threshold)
    total = w[keep].sum()
    if total <= 0:
        raise ValueError("weight vector has no element above the threshold")
    order = sorted(keep, key=lambda i: (-w[i], symbols[i]))
    return {symbols[i]: float(w[i] / total) for i in order}


def format_formula(value: CompositionLike | Mapping[str, float], *, decimals: int = 3) -> str:
    """Readable fractional formula, largest fraction first: ``Al0.650Cu0.200Fe0.150``."""
    fractions = atomic_fractions(value)
    order = sorted(fractions, key=lambda s: (-fractions[s], s))
    return "".join(f"{s}{fractions[s]:.{decimals}f}" for s in order)


def format_percent(value: CompositionLike | Mapping[str, float], *, decimals: int = 1) -> str:
    """Atomic-percent formula, largest first: ``Al65Cu20Fe15`` (trailing zeros trimmed)."""
    fractions = atomic_fractions(value)
    order = sorted(fractions, key=lambda s: (-fractions[s], s))
    return "".join(f"{s}{_format_number(100 * fractions[s], decimals)}" for s in order)


@dataclass(frozen=True)
class ParsedBatch:
    """Result of parsing many compositions: good rows and a table of bad rows with reasons.

    ``keys`` and ``weights`` are aligned with ``rows`` (positions of the good inputs).
    ``bad`` has columns ``row`` (position in the input), ``input`` and ``reason``.
    """

    rows: np.ndarray
    keys: list[str]
    weights: np.ndarray
    bad: pd.DataFrame

    @property
    def n_bad(self) -> int:
        return len(self.bad)


def find_composition_column(columns: Sequence[object]) -> str | None:
    """The first column named like :data:`COMPOSITION_COLUMN_NAMES` (case and spaces ignored), or None."""
    lowered = [str(c).strip().lower() for c in columns]
    for name in COMPOSITION_COLUMN_NAMES:
        if name in lowered:
            return str(columns[lowered.index(name)])
    return None


def parse_many(values: Iterable[object], *, row_labels: Sequence[object] | None = None) -> ParsedBatch:
    """Parse a batch; bad inputs are collected with their reason instead of failing the batch.

    ``row_labels`` (e.g. a DataFrame index or file line numbers) are used in the bad-row table's ``row``
    column; by default the 0-based position is used.
    """
    values = list(values)
    labels = list(row_labels) if row_labels is not None else list(range(len(values)))
    index = element_index()
    good_rows: list[int] = []
    keys: list[str] = []
    # one preallocated table, filled row by row (no per-row arrays to stack: half the peak memory)
    weights = np.zeros((len(values), len(index)))
    bad: list[dict[str, object]] = []
    seen: dict[str, tuple[str, int]] = {}  # formula text -> (key, its row in weights): parsed once
    for position, value in enumerate(values):
        row = len(good_rows)
        try:
            if value is None or (isinstance(value, float) and np.isnan(value)):
                raise ValueError("missing composition (empty cell)")
            cache_key = value if isinstance(value, str) else None
            if cache_key is not None and cache_key in seen:
                key, source = seen[cache_key]
                weights[row] = weights[source]
            else:
                amounts = parse_amounts(value)  # type: ignore[arg-type]
                fractions = _fractions(amounts, value)  # finite fractions summing to 1 (amounts checked above)
                key = _key_from_amounts(amounts)
                for symbol, fraction in fractions.items():
                    weights[row, index[symbol]] = fraction
                if cache_key is not None:
                    seen[cache_key] = (key, row)
        except ValueError as error:
            bad.append({"row": labels[position], "input": value, "reason": str(error)})
            continue
        good_rows.append(position)
        keys.append(key)
    stacked = weights if len(good_rows) == len(values) else weights[: len(good_rows)].copy()
    return ParsedBatch(
        rows=np.asarray(good_rows, dtype=np.int64),
        keys=keys,
        weights=stacked,
        bad=pd.DataFrame(bad, columns=["row", "input", "reason"]),
    )


_KEY_TOKEN = re.compile(r"([A-Z][a-z]?)(\d+(?:\.\d+)?)")


def weights_from_keys(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 94) atomic fractions of canonical keys (:func:`canonical_key`) and which keys were readable: the
    weights :func:`parse_many` gives, read with one regular expression per key (about 10x faster, for the
    hundreds of thousands of keys of a checkpoint's training record); a key in another form goes through
    :func:`parse_many`, a bad one gets a zero row and ``False``."""
    index = element_index()
    rows: list[int] = []
    cols: list[int] = []
    amounts: list[str] = []
    ok = np.ones(len(keys), dtype=bool)
    others: list[int] = []
    for row, key in enumerate(keys):
        tokens = _KEY_TOKEN.findall(key) if isinstance(key, str) else None
        if not tokens or sum(len(s) + len(a) for s, a in tokens) != len(key) or any(s not in index for s, _ in tokens):
            others.append(row)
            continue
        for symbol, amount in tokens:
            rows.append(row)
            cols.append(index[symbol])
            amounts.append(amount)
    weights = np.zeros((len(keys), len(index)))
    flat = np.asarray(rows, dtype=np.int64) * len(index) + np.asarray(cols, dtype=np.int64)
    values = np.asarray(amounts, dtype=np.float64)
    totals = np.bincount(np.asarray(rows, dtype=np.int64), weights=values, minlength=len(keys))  # in key order
    np.add.at(weights.ravel(), flat, values / totals[np.asarray(rows, dtype=np.int64)])
    if others:
        parsed = parse_many([keys[i] for i in others])
        ok[others] = False
        good = np.asarray(others)[parsed.rows]
        weights[good] = parsed.weights
        ok[good] = True
    return weights, ok
