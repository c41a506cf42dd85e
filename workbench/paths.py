"""Filesystem locations of the workbench (page files live in the top-level ``pages/`` folder)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "pages"


def page(name: str) -> str:
    """Absolute path of a page file, as given to ``st.Page`` (for ``st.page_link`` / ``st.switch_page``)."""
    return str(PAGES / name)
