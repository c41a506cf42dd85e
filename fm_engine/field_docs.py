"""Settings documented once: each dataclass field's meaning lives in its ``help`` metadata, next to its default.

The class docstring (``Attributes:``), the CLI's reference of a config file and the workbench form's help texts
are all made from it, so a setting is explained in one place and its default is written in one place.
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from typing import Any

HELP = "help"  # the metadata key of a field's help text
COMMENT_COLUMN = 31  # where the ``# help`` comments of a YAML reference start
WIDTH = 118


def documented(*, help: str, default: Any = dataclasses.MISSING, default_factory: Any = dataclasses.MISSING) -> Any:  # noqa: A002
    """A dataclass field with its help text: what it means, its unit or range and what its ends do."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={HELP: help})


def field_help(cls: type, name: str) -> str:
    """The help text of field ``name`` of dataclass ``cls`` ("" when it has none)."""
    return next(f.metadata.get(HELP, "") for f in dataclasses.fields(cls) if f.name == name)


def with_field_docs(cls: type) -> type:
    """Class decorator (above ``@dataclass``): the docstring gets an ``Attributes:`` section from the help texts."""
    lines = ["", "", "Attributes:"]
    for f in dataclasses.fields(cls):
        if f.metadata.get(HELP):
            lines += textwrap.wrap(f"{f.name}: {f.metadata[HELP]}", WIDTH - 8, initial_indent="    ",
                                   subsequent_indent="        ")  # fmt: skip
    cls.__doc__ = inspect.cleandoc(cls.__doc__ or "") + "\n".join(lines)
    return cls


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    return str(value)


def yaml_reference(instance: Any, *, indent: int = 0, skip: tuple[str, ...] = ()) -> list[str]:
    """The settings of dataclass ``instance`` as commented YAML lines (``key: value  # help``), nested
    dataclasses as indented sections: a reference of a config file whose values are the defaults."""
    lines = []
    pad = " " * indent
    for f in dataclasses.fields(instance):
        if f.name in skip:
            continue
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            lines += yaml_reference(value, indent=indent + 2)
            continue
        entry = f"{pad}{f.name}: {_yaml_value(value)}"
        help_text = f.metadata.get(HELP, "")
        if not help_text:
            lines.append(entry)
            continue
        comment = textwrap.wrap(help_text, WIDTH - COMMENT_COLUMN - 2, break_on_hyphens=False)
        lines.append(f"{entry.ljust(COMMENT_COLUMN - 1)} # {comment[0]}")
        lines += [f"{' ' * COMMENT_COLUMN}# {line}" for line in comment[1:]]
    return lines
