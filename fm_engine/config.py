"""Strict, typed configuration loading: dataclasses from YAML/JSON mappings, unknown keys are errors."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass inside ``X`` or ``X | None``, if any."""
    if _is_dataclass_type(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if _is_dataclass_type(arg):
                return arg
    return None


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, *, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields are built recursively.

    An unknown key raises ``ValueError`` naming its full path (e.g. ``trainer.epochs``).
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ValueError(f"'{path or cls.__name__}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in '{path}'" if path else ""
        listed = ", ".join(f"'{path + '.' if path else ''}{key}'" for key in unknown)
        raise ValueError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {listed}{where} (allowed: {', '.join(sorted(names))})"
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        nested = _dataclass_in(hints.get(key))
        if nested is not None and isinstance(value, Mapping):
            value = from_mapping(nested, value, path=f"{path}.{key}" if path else key)
        values[key] = value
    try:
        return cls(**values)
    except TypeError as error:
        raise ValueError(f"{path or cls.__name__}: {error}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file into a dict; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path.name}: not valid YAML ({error})") from None
    if data is None:
        raise ValueError(f"{path.name}: the config file is empty")
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: the config must be a mapping of sections")
    return data
