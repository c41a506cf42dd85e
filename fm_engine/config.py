"""Strict, typed configuration loading: dataclasses from YAML/JSON mappings, unknown keys are errors."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 numbers: ``1e-3`` is a float (PyYAML's YAML 1.1 rules make it a string)."""


ConfigLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+"
        r"(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF))$|^\.(?:nan|NaN|NAN)$"
    ),  # fmt: skip
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML (or JSON) text with :class:`ConfigLoader`."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass


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
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path.name}: not valid YAML ({error})") from None
    if data is None:
        raise ValueError(f"{path.name}: the config file is empty")
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: the config must be a mapping of sections")
    return data


def known_keys_only(cls: type, data: Mapping[str, Any], *, path: str = "") -> tuple[dict[str, Any], list[str]]:
    """``data`` without the keys that dataclass ``cls`` (and its nested dataclass fields) does not know,
    and the dotted paths of the keys dropped (for files shared with other tools, which warn instead of
    failing)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in names:
            dropped.append(where)
            continue
        nested = _dataclass_in(hints.get(key))
        if nested is not None and isinstance(value, Mapping):
            value, inner = known_keys_only(nested, value, path=where)
            dropped += inner
        kept[key] = value
    return kept, dropped
