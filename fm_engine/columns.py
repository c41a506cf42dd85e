"""Names of the value columns of predictions and designs: one builder and one parser per kind.

Every value column names its unit: ``<quantity> [<unit>]``; the unit is left out only when the task declares none
(``glass_forming``) and for a predicted class label (``hea_phase``). The quantities:

* a task's value: ``<task>`` (a vector task ``<task>_<i>``), e.g. ``bulk_modulus [GPa]``;
* a curve point of a sequence task: ``<task>@<t><t_unit>`` (``t`` in its shortest form: ``300``, ``1273.5``;
  the task's ``t_unit`` written right after it), e.g. ``yield_strength@1073K [MPa]``; the same in ``fm predict``
  output and in design tables;
* a class probability (predictions): ``<task>_proba_<class>``, e.g. ``hea_phase_proba_BCC [probability]``;
* the probability of a set of classes (designs): ``P(<task>=<class>/<class>...)``, e.g.
  ``P(hea_phase=BCC) [probability]``; probabilities are unitless, their "unit" says what they are
  (:data:`PROBABILITY_UNIT`);
* an ensemble's spread of a value column: ``<quantity>_std [<unit>]`` (``bulk_modulus_std [GPa]``), in the unit of
  the column; a design's seed value, seed spread and change: ``<quantity> seed [<unit>]``,
  ``<quantity> seed_std [<unit>]``, ``<quantity> change [<unit>]``.

Task names may contain ``@``: a curve column is split at its *last* ``@``. The parsers also read the names written
before units were added (``yield_strength@1073``, ``bulk_modulus``), so older files still load.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CURVE_SEPARATOR = "@"
STD_SUFFIX = "_std"
SEED_SUFFIX = " seed"
CHANGE_SUFFIX = " change"
VARIANT_SUFFIXES = (STD_SUFFIX, SEED_SUFFIX, CHANGE_SUFFIX)
"""What follows a quantity in its spread / seed / change column (a seed's spread: ``seed_std``)."""
PROBA_INFIX = "_proba_"
PROBABILITY_UNIT = "probability"
"""The bracket of a probability column: probabilities have no physical unit, the bracket says what the value is."""
_UNIT = re.compile(r"^(?P<quantity>.*\S) \[(?P<unit>[^\[\]]*)\]$")
_T = re.compile(r"^(?P<t>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?P<unit>(?:\D.*)?)$")


def with_unit(quantity: str, unit: str | None) -> str:
    """``bulk_modulus`` in ``GPa`` -> ``bulk_modulus [GPa]``; no unit (``""`` / None): the quantity alone."""
    unit = (unit or "").strip()
    return f"{quantity} [{unit}]" if unit else quantity


def split_unit(column: str) -> tuple[str, str]:
    """``bulk_modulus [GPa]`` -> ``("bulk_modulus", "GPa")``; a name without a unit: ``(column, "")``."""
    match = _UNIT.match(column)
    return (match["quantity"], match["unit"]) if match else (column, "")


def variant_column(column: str, suffix: str) -> str:
    """``column`` with ``suffix`` after its quantity and before its unit: ``bulk_modulus seed [GPa]``."""
    quantity, unit = split_unit(column)
    return with_unit(quantity + suffix, unit)


def std_column(column: str) -> str:
    """The column of an ensemble's standard deviation over its members of ``column``, in its unit:
    ``bulk_modulus [GPa]`` -> ``bulk_modulus_std [GPa]``."""
    return variant_column(column, STD_SUFFIX)


def seed_column(column: str) -> str:
    """A design's column of ``column``'s value at the recipe's seed: ``bulk_modulus seed [GPa]``."""
    return variant_column(column, SEED_SUFFIX)


def change_column(column: str) -> str:
    """A design's column of ``column``'s change from seed to recipe: ``bulk_modulus change [GPa]``."""
    return variant_column(column, CHANGE_SUFFIX)


def curve_column(task: str, t: float, t_unit: str = "") -> str:
    """The quantity of ``task``'s value at ``t`` (in ``t_unit``): ``yield_strength@1073K``; :func:`with_unit`
    adds the value's unit."""
    return f"{task}{CURVE_SEPARATOR}{t:g}{t_unit.replace(' ', '')}"


def parse_curve_column(name: str) -> tuple[str, float] | None:
    """``yield_strength@1073K [MPa]`` (also ``yield_strength@1073K``, ``yield_strength@1073``) ->
    ``("yield_strength", 1073.0)``; ``None`` for a name that is not a curve column."""
    task, separator, t = split_unit(name)[0].rpartition(CURVE_SEPARATOR)
    match = _T.match(t)
    if not separator or not task or match is None:
        return None
    return task, float(match["t"])


def class_probability_column(task: str, label: str) -> str:
    """The column of the predicted probability of one class: ``hea_phase_proba_BCC [probability]``."""
    return with_unit(f"{task}{PROBA_INFIX}{label}", PROBABILITY_UNIT)


def probability_column(task: str, classes: Sequence[str]) -> str:
    """The quantity of the probability that ``task`` is one of ``classes``: ``P(hea_phase=BCC/FCC)``
    (its unit: :data:`PROBABILITY_UNIT`)."""
    return f"P({task}={'/'.join(classes)})"
