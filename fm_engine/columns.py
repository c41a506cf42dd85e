"""Names of the value columns of predictions and designs: one builder and one parser per kind.

* a curve point of a sequence task: ``<task>@<t>`` (``t`` in the task's ``t_unit``, shortest form: ``300``,
  ``1273.5``), e.g. ``yield_strength@1073``; the same in ``fm predict`` output and in design tables;
* the probability of a set of classes (designs): ``P(<task>=<class>/<class>...)``, e.g. ``P(hea_phase=BCC)``;
* an ensemble's spread of a value column: ``<column>_std`` (``bulk_modulus_std``, ``yield_strength@1073_std``,
  ``hea_phase_proba_BCC_std``), in the unit of the column.

Task names may contain ``@``: a curve column is split at its *last* ``@``.
"""

from __future__ import annotations

from collections.abc import Sequence

CURVE_SEPARATOR = "@"
STD_SUFFIX = "_std"


def std_column(column: str) -> str:
    """The column of an ensemble's standard deviation over its members of ``column``: ``bulk_modulus_std``."""
    return f"{column}{STD_SUFFIX}"


def curve_column(task: str, t: float) -> str:
    """The column of ``task``'s value at ``t`` (in the task's ``t_unit``): ``yield_strength@1073``."""
    return f"{task}{CURVE_SEPARATOR}{t:g}"


def parse_curve_column(name: str) -> tuple[str, float] | None:
    """``yield_strength@1073`` -> ``("yield_strength", 1073.0)``; ``None`` for a name that is not a curve column."""
    task, separator, t = name.rpartition(CURVE_SEPARATOR)
    if not separator or not task:
        return None
    try:
        return task, float(t)
    except ValueError:
        return None


def probability_column(task: str, classes: Sequence[str]) -> str:
    """The column of the probability that ``task`` is one of ``classes``: ``P(hea_phase=BCC/FCC)``."""
    return f"P({task}={'/'.join(classes)})"
