"""The one time limit of the test suite.

Waits end on a state (a server answers, a page shows X, a run is done, a process exits); this ceiling, in seconds,
only ends a wait for a state that never comes (a hang). It is not a speed limit: a slow or loaded machine waits
longer. ``FM_TEST_CEILING_S`` sets it (default 1800 s).
"""

from __future__ import annotations

import os


def _ceiling_seconds() -> float:
    """``FM_TEST_CEILING_S`` in seconds (> 0), default 1800."""
    raw = os.environ.get("FM_TEST_CEILING_S", "1800")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"FM_TEST_CEILING_S={raw!r}: expected a number of seconds > 0")
    return value


CEILING_S = _ceiling_seconds()
