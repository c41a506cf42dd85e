"""A clickable periodic table for choosing a set of elements (H..Pu), with presets and a text box.

The canonical selection lives in ``st.session_state[key]`` (a list of symbols in table order), a key no
widget owns, so it survives page switches; the buttons and the text box only change it via callbacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import streamlit as st

from fm_engine.elements import element_index, element_symbols
from fm_engine.plots import element_position

N_COLUMNS = 18


def table_layout() -> list[list[str | None]]:
    """Rows of the periodic table (main block, then lanthanides and actinides); ``None`` = empty cell."""
    cells: dict[tuple[int, int], str] = {}
    for z, symbol in enumerate(element_symbols(), start=1):
        cells[element_position(z)] = symbol
    n_rows = max(row for row, _ in cells) + 1
    rows = [[cells.get((r, c)) for c in range(N_COLUMNS)] for r in range(n_rows)]
    return [row for row in rows if any(row)]


def ordered(symbols: Iterable[str]) -> list[str]:
    """Known symbols, deduplicated, in periodic-table order."""
    index = element_index()
    return sorted({s for s in symbols if s in index}, key=index.__getitem__)


def parse_symbols(text: str, presets: Mapping[str, Sequence[str]] | None = None) -> tuple[list[str], list[str]]:
    """``"Fe Ni, Co;Cr"`` -> (known symbols in table order, unknown tokens). Preset names expand.

    Symbols are case-tolerant (``fe`` -> ``Fe``)."""
    index = element_index()
    known, unknown = [], []
    for token in re.split(r"[\s,;]+", text.strip()):
        if not token:
            continue
        if presets and token in presets:
            known.extend(presets[token])
            continue
        symbol = token[:1].upper() + token[1:].lower()
        (known if symbol in index else unknown).append(symbol if symbol in index else token)
    return ordered(known), unknown


def element_picker(
    key: str,
    *,
    presets: Mapping[str, Sequence[str]] | None = None,
    descriptions: Mapping[str, str] | None = None,
    default: Sequence[str] = (),
    columns_gap: str = "xxsmall",
) -> list[str]:
    """Render the picker; returns the selected symbols (table order). ``key`` holds the selection; ``descriptions``:
    a one-line meaning per preset (its button's help).

    The picker is a fragment: a click reruns the picker alone, not the page around it (which reads the selection
    from ``st.session_state[key]`` on its next run, e.g. when the design is started)."""
    if key not in st.session_state:
        st.session_state[key] = ordered(default)
    _picker(key, dict(presets or {}), dict(descriptions or {}), columns_gap)
    return list(st.session_state[key])


@st.fragment
def _picker(key: str, presets: dict[str, Sequence[str]], descriptions: dict[str, str], columns_gap: str) -> None:
    error_key = f"{key}__error"

    def set_selection(symbols: Iterable[str]) -> None:
        st.session_state[key] = ordered(symbols)
        st.session_state[error_key] = ""

    def toggle(symbol: str) -> None:
        current = set(st.session_state[key])
        current.symmetric_difference_update({symbol})
        set_selection(current)

    def from_text(mode: str) -> None:
        symbols, unknown = parse_symbols(st.session_state.get(f"{key}__text", ""), presets)
        if unknown:
            st.session_state[error_key] = f"Unknown element symbol(s): {', '.join(unknown)}"
            return
        set_selection(symbols if mode == "replace" else [*st.session_state[key], *symbols])

    if presets:
        buttons = st.columns(len(presets) + 1, gap="small")
        for column, (name, symbols) in zip(buttons, presets.items(), strict=False):
            meaning = f"{descriptions[name]} ({len(symbols)} elements)" if name in descriptions else None
            column.button(
                name, key=f"{key}__preset_{name}", on_click=set_selection, args=(symbols,), width="stretch",
                help=meaning or f"{len(symbols)} elements",
            )  # fmt: skip
        buttons[-1].button("clear", key=f"{key}__clear", on_click=set_selection, args=((),), width="stretch")

    text_column, replace_column, add_column = st.columns([6, 1, 1], vertical_alignment="bottom")
    text_column.text_input(
        "Symbols (or a preset name)", key=f"{key}__text", placeholder="Fe Ni Co Cr",
        on_change=from_text, args=("replace",),
    )  # fmt: skip
    replace_column.button("Set", key=f"{key}__set", on_click=from_text, args=("replace",), width="stretch")
    add_column.button("Add", key=f"{key}__add", on_click=from_text, args=("add",), width="stretch")
    if st.session_state.get(error_key):
        st.error(st.session_state[error_key])

    selected = set(st.session_state[key])
    layout = table_layout()
    for r, row in enumerate(layout):
        if r == len(layout) - 2:  # a little space before the lanthanides/actinides rows
            st.write("")
        columns = st.columns(N_COLUMNS, gap=columns_gap)
        for column, symbol in zip(columns, row, strict=True):
            if symbol is None:
                continue
            column.button(
                symbol, key=f"{key}__el_{symbol}", on_click=toggle, args=(symbol,), width="stretch",
                type="primary" if symbol in selected else "secondary",
            )  # fmt: skip
    chosen = list(st.session_state[key])
    st.caption(f"{len(chosen)} element(s) allowed: {' '.join(chosen) if chosen else 'none'}")
