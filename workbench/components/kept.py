"""Form widgets whose values survive page switches (Streamlit drops a widget's state when its page is left).

A :class:`KeptForm` keeps the last value of every widget it makes under one session-state key no widget owns,
and the content of each editable table under its own key, and gives each widget back its value when the page
is shown again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

# The argument that holds a widget's own default, by widget kind (``value`` for the others).
DEFAULT_ARGUMENT = {"selectbox": "index", "radio": "index", "multiselect": "default"}


def apply_edits(frame: pd.DataFrame, edits: dict[str, Any]) -> pd.DataFrame:
    """A data editor's state (edited / added / deleted rows, by position) applied to ``frame``."""
    frame = frame.reset_index(drop=True).copy()
    for position, changes in (edits.get("edited_rows") or {}).items():
        for column, value in changes.items():
            if column in frame.columns:
                frame.loc[int(position), column] = value
    deleted = {int(p) for p in edits.get("deleted_rows") or []}
    frame = frame.drop(index=[p for p in deleted if p < len(frame)]).reset_index(drop=True)
    added = [{c: v for c, v in row.items() if c in frame.columns} for row in edits.get("added_rows") or []]
    if added:
        frame = pd.concat([frame, pd.DataFrame(added, columns=frame.columns)], ignore_index=True)
    return frame


@dataclass(frozen=True)
class KeptForm:
    """Widgets kept under ``<store>_form`` (values by widget key) and ``<store>_table_<name>`` (tables); data
    editors get keys ``<editors>_<name>_<version>``."""

    store: str
    editors: str

    @property
    def values_key(self) -> str:
        return f"{self.store}_form"

    def table_key(self, name: str) -> str:
        return f"{self.store}_table_{name}"

    def widget(
        self, factory: Callable[..., Any], label: str, key: str, default: Any, *, options: Any = None, **kwargs: Any
    ) -> Any:
        """A widget whose value survives page switches: its last value is kept and restored.

        The current value (else the kept one, else ``default``) is given as the widget's *own default*
        (``value=`` / ``index=`` / ``default=``) on every run, never written to ``st.session_state[key]`` before
        the widget. The browser shows a widget's own default whenever it mounts the widget without being told a
        value (e.g. after a slow run was interrupted by the user's next click, as happens when several sessions
        share the server), and sends that value back with the next click: with the minimum as own default, the
        sliders silently ran designs at 0.00. Now what the browser falls back to is always the current value."""
        store = st.session_state.setdefault(self.values_key, {})
        assigned = key in st.session_state.get(self.assigned_key, ())
        if assigned:
            st.session_state[self.assigned_key].discard(key)
        if assigned and key in st.session_state:  # set by assign() this run: no own default this once
            value = factory(label, key=key, **({"options": options} if options is not None else {}), **kwargs)
            store[key] = value
            return value
        value = st.session_state[key] if key in st.session_state else store.get(key, default)  # current value first
        if options is not None:  # a remembered value must still be an option (another checkpoint)
            if isinstance(value, list):
                value = [v for v in value if v in options]
            elif value not in options:
                value = default
            kwargs["options"] = options
        argument = DEFAULT_ARGUMENT.get(getattr(factory, "__name__", ""), "value")
        kwargs[argument] = list(options).index(value) if argument == "index" else value
        value = factory(label, key=key, **kwargs)
        store[key] = value
        return value

    @property
    def assigned_key(self) -> str:
        return f"{self.store}_assigned"

    def assign(self, key: str, value: Any) -> None:
        """Set a kept widget's value from a callback (e.g. a preset button): through the Session State API, so
        the browser shows it; the widget is then drawn once without its own default (Streamlit warns when a
        widget gets both). The value is kept too, for a widget not drawn on the next run (Streamlit may drop the
        Session State value of a widget it does not draw)."""
        st.session_state[key] = value
        st.session_state.setdefault(self.values_key, {})[key] = value
        st.session_state.setdefault(self.assigned_key, set()).add(key)

    def table(self, name: str, default: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
        """An ``st.data_editor`` whose content is kept (under a key no widget owns).

        Each edit is folded into the kept table and the editor gets a fresh key, so nothing is lost when the page
        is left (widget state is dropped then) and the edits are never applied twice."""
        base_key, version_key = self.table_key(name), f"{self.table_key(name)}_version"
        if base_key not in st.session_state:
            st.session_state[base_key] = default
        version = st.session_state.get(version_key, 0)
        editor_key = f"{self.editors}_{name}_{version}"

        def commit() -> None:
            st.session_state[base_key] = apply_edits(st.session_state[base_key], st.session_state[editor_key])
            st.session_state[version_key] = version + 1

        return st.data_editor(
            st.session_state[base_key], key=editor_key, on_change=commit, num_rows="dynamic", hide_index=True, **kwargs
        )

    def replace_table(self, name: str, frame: pd.DataFrame) -> None:
        """Replace a kept table's content (its editor is made again with the new content)."""
        version_key = f"{self.table_key(name)}_version"
        st.session_state[self.table_key(name)] = frame
        st.session_state[version_key] = st.session_state.get(version_key, 0) + 1
