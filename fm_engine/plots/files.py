"""Writing interactive figures to disk atomically (temp file + fsync + rename, see :mod:`fm_engine.safe_io`)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from fm_engine.safe_io import atomic_write_text

PLOTLY_BUNDLE = "plotly.min.js"


def write_figure_html(figure: go.Figure, path: str | Path) -> Path:
    """Write ``figure`` as HTML at ``path``; ``plotly.min.js`` is written once beside it, so the figures of
    a folder open offline and share one copy of plotly (as ``write_html(include_plotlyjs="directory")``)."""
    path = Path(path)
    bundle = path.parent / PLOTLY_BUNDLE
    if not bundle.is_file():
        atomic_write_text(bundle, get_plotlyjs())
    return atomic_write_text(path, figure.to_html(include_plotlyjs="directory"))
