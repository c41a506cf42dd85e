"""Strict, typed configuration loading: dataclasses from YAML/JSON/TOML mappings.

One loader for every config file and section: :func:`read_config_file` reads a file within the limits below
(size, nesting depth, YAML alias expansion), and :func:`from_mapping` builds a dataclass from a mapping,
checking every value against the field's type hint (int, float, str, bool, ``Literal``, lists, mappings,
nested dataclasses, ``None``). Unknown keys are errors, all through :func:`check_keys` (whose ``shared`` option
drops them instead, for a file documented as shared with other tools: the rehearsal TOML); every error is a
``ValueError`` naming the dotted key (``trainer.max_epochs``) and what was expected. Range checks live in each
dataclass's ``__post_init__``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

MAX_CONFIG_BYTES = 10_000_000  # a config file larger than this (10 MB) is refused
MAX_CONFIG_DEPTH = 100  # nesting levels of mappings/lists in a config file
MAX_YAML_NODES = 100_000  # values a YAML document may expand to through aliases (an alias bomb is refused)


class ConfigLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 numbers (``1e-3`` is a float; PyYAML's YAML 1.1 rules make it a string),
    refusing documents nested deeper than :data:`MAX_CONFIG_DEPTH` or expanding (through ``*aliases``) to
    more than :data:`MAX_YAML_NODES` values."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_CONFIG_DEPTH:
            mark = self.peek_event().start_mark
            raise ValueError(
                f"nested deeper than {MAX_CONFIG_DEPTH} levels (line {mark.line + 1}, column {mark.column + 1}); "
                f"the limit is {MAX_CONFIG_DEPTH}"
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._sizes:
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._sizes.get(id(child), 1) for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
            if size > MAX_YAML_NODES:
                raise ValueError(
                    f"the YAML expands (through *aliases) to more than {MAX_YAML_NODES:,} values "
                    f"(line {node.start_mark.line + 1}); the limit is {MAX_YAML_NODES:,}: write the values out"
                )
            self._sizes[id(node)] = size
        return node


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
    """Parse YAML (or JSON) text with :class:`ConfigLoader` (limits: depth, alias expansion)."""
    try:
        return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ValueError(f"nested too deeply; the limit is {MAX_CONFIG_DEPTH} levels") from None


def check_depth(data: Any, *, limit: int = MAX_CONFIG_DEPTH) -> None:
    """Refuse parsed data (JSON/TOML) nested deeper than ``limit`` levels (iterative: no recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping | list | tuple):
            if depth > limit:
                raise ValueError(f"nested deeper than {limit} levels; the limit is {limit}")
            children = value.values() if isinstance(value, Mapping) else value
            stack.extend((child, depth + 1) for child in children)


def read_text_file(path: str | Path, *, what: str = "file", max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """A UTF-8 text file's contents; a missing file, a folder, a file over ``max_bytes`` or non-UTF-8 bytes
    raise a ``ValueError`` naming the file (and the limit)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: expected a {what}, found a folder")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path.name}: {size:,} bytes, larger than the {max_bytes:,}-byte limit for a {what}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path.name}: not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}); "
                         "save it as UTF-8") from None  # fmt: skip


def _parse_text(path: Path, text: str, kind: str) -> Any:
    """``text`` of file ``path`` parsed as ``kind`` (TOML, YAML or JSON) within the depth and alias limits;
    errors name the file."""
    syntax_error = {"TOML": tomllib.TOMLDecodeError, "JSON": json.JSONDecodeError}.get(kind, yaml.YAMLError)
    try:
        if kind == "YAML":
            return load_yaml(text)
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text)
        check_depth(data)
        return data
    except syntax_error as error:
        raise ValueError(f"{path.name}: not valid {kind} ({one_line(str(error))})") from None
    except RecursionError:
        raise ValueError(f"{path.name}: nested too deeply; the limit is {MAX_CONFIG_DEPTH} levels") from None
    except ValueError as error:
        raise ValueError(f"{path.name}: {error}") from None


def read_config_file(path: str | Path, *, kind: str = "") -> dict[str, Any]:
    """Read a YAML / JSON (or, with ``kind="toml"`` or a ``.toml`` name, TOML) config file into a dict, within
    the size, depth and alias limits; errors name the file."""
    path = Path(path)
    text = read_text_file(path, what="config file")
    kind = kind or ("toml" if path.suffix.lower() == ".toml" else "yaml")
    data = _parse_text(path, text, "TOML" if kind == "toml" else "YAML")
    if data is None:
        raise ValueError(f"{path.name}: the config file is empty")
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: the config must be a mapping of sections")
    return data


def read_json_file(path: str | Path, *, what: str = "JSON file", max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """Parse a JSON file within the size and depth limits; errors name the file."""
    path = Path(path)
    return _parse_text(path, read_text_file(path, what=what, max_bytes=max_bytes), "JSON")


@contextlib.contextmanager
def naming_file(path: str | Path) -> Iterator[None]:
    """Prefix the message of a ``ValueError`` raised inside with the file's name (unless it names it already)."""
    name = Path(path).name
    try:
        yield
    except ValueError as error:
        if name in str(error):
            raise
        raise type(error)(f"{name}: {error}") from None


def one_line(text: str) -> str:
    """``text`` on one line (line breaks and indentation collapsed)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


# ---------------------------------------------------------------------- typed values
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else None


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass inside ``X`` or ``X | None``, if any."""
    if _is_dataclass_type(tp):
        return tp
    for arg in _union_args(tp) or ():
        if _is_dataclass_type(arg):
            return arg
    return None


_NAMES: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "true/false values"),
    type(None): ("null", "nulls"),
}


def describe_type(tp: Any, *, plural: bool = False) -> str:
    """What a type hint expects, in words (``list[int]`` -> ``a list of integers``)."""
    if tp in _NAMES:
        return _NAMES[tp][plural]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        listed = ", ".join(repr(a) for a in args)
        return f"values from {listed}" if plural else (f"one of {listed}" if len(args) > 1 else listed)
    if args and _union_args(tp):
        words = [describe_type(a, plural=plural) for a in args]
        return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    if origin in (list, tuple):
        item = describe_type(args[0], plural=True) if args else "values"
        return f"lists of {item}" if plural else f"a list of {item}"
    if origin is dict or tp is dict:
        value = describe_type(args[1], plural=True) if len(args) == 2 else "values"
        return f"mappings to {value}" if plural else f"a mapping of names to {value}"
    if _is_dataclass_type(tp):
        return "mappings of settings" if plural else "a mapping of settings"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return describe_type(typing.Literal[tuple(m.value for m in tp)], plural=plural)  # type: ignore[misc]
    return "values" if plural else "a value"


class _Mismatch(Exception):
    """A value does not match a type hint (turned into a ``ValueError`` naming the key)."""

    def __init__(self, key: str, tp: Any, value: Any) -> None:
        self.key, self.tp, self.value = key, tp, value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_value(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against type hint ``tp`` (ints are accepted for floats, lists for tuples; nested
    dataclasses are built with :func:`from_mapping`); a mismatch raises ``ValueError`` naming ``key``."""
    try:
        return _check(value, tp, key)
    except _Mismatch as error:
        raise ValueError(f"{error.key}: expected {describe_type(error.tp)}, got {_shown(error.value)}") from None


def _check(value: Any, tp: Any, key: str) -> Any:  # noqa: C901 - one branch per kind of type hint
    if tp is Any or tp is object or isinstance(tp, TypeVar):
        return value
    if tp is type(None):
        if value is not None:
            raise _Mismatch(key, tp, value)
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise _Mismatch(key, tp, value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch(key, tp, value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Mismatch(key, tp, value)
        if not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Mismatch(key, tp, value)
        return value
    union = _union_args(tp)
    if union:
        if value is None and type(None) in union:
            return None
        nested_error: ValueError | None = None
        for arm in union:
            if arm is type(None):
                continue
            try:
                return _check(value, arm, key)
            except _Mismatch:
                continue
            except ValueError as error:  # the value has the right shape but a bad part: report that part
                nested_error = nested_error or error
        if nested_error is not None:
            raise nested_error
        raise _Mismatch(key, tp, value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if isinstance(value, bool) or value not in args:
            raise _Mismatch(key, tp, value)
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if not isinstance(value, tp | str):  # a string is parsed by the dataclass (aliases, case)
            raise _Mismatch(key, tp, value)
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _Mismatch(key, tp, value)
        item = args[0] if args else Any
        checked = [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(checked) if origin is tuple or tp is tuple else checked
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch(key, tp, value)
        k_type, v_type = args if len(args) == 2 else (Any, Any)
        return {_check(k, k_type, f"{key} key"): _check(v, v_type, f"{key}.{k}") for k, v in value.items()}
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _Mismatch(key, tp, value)
        return from_mapping(tp, value, path=key)
    return value  # a type this loader does not check (the dataclass does)


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, *, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, every value checked against its field's type hint; nested
    dataclass fields are built recursively.

    An unknown key, a missing required key or a value of the wrong type raises ``ValueError`` naming its full
    dotted path (e.g. ``trainer.max_epochs: expected an integer, got 'ten'``).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path or cls.__name__}: expected {describe_type(cls)}, got {_shown(data)}")
    data = dict(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    prefix = f"{path}." if path else ""
    check_keys(data, fields, path=path)
    missing = [
        name for name, f in fields.items()
        if f.init and name not in data and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]  # fmt: skip
    if missing:
        raise ValueError(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(prefix + m for m in missing)}")
    values = {key: check_value(value, hints.get(key, Any), prefix + key) for key, value in data.items()}
    try:
        return cls(**values)
    except TypeError as error:
        raise ValueError(f"{path or cls.__name__}: {error}") from None


def check_range(
    key: str, value: float | None, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False,
) -> None:  # fmt: skip
    """Refuse ``value`` outside ``[low, high]`` (``(low`` / ``high)`` when open), naming ``key`` and the range;
    None passes. Non-finite numbers are refused."""
    if value is None:
        return
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if high is None:
            expected = f"{'>' if low_open else '>='} {_number(low)}" if low is not None else "a finite number"
        elif low is None:
            expected = f"{'<' if high_open else '<='} {_number(high)}"
        else:
            expected = f"in {'(' if low_open else '['}{_number(low)}, {_number(high)}{')' if high_open else ']'}"
        raise ValueError(f"{key}: expected {expected}, got {value!r}")


DEFAULT_SEED = 42  # the random seed of a training run (and of the data split) unless one is given
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


def check_seed(key: str, seed: int | None) -> None:
    """Refuse a random seed outside [0, 2**32 - 1] (the range numpy and Lightning accept); None passes."""
    check_range(key, seed, low=0, high=MAX_SEED)


def _number(value: float) -> str:
    """``100000`` -> ``100,000``; ``0.5`` -> ``0.5``."""
    return f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"


def check_keys(
    data: Mapping[str, Any], allowed: Iterable[str], *, path: str = "", label: str = "", shared: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The one unknown-key check of every config file and section: ``data``'s keys against ``allowed``.

    Strict (the default): an unknown key raises a ``ValueError`` naming it (as ``path.key``, or after
    ``label``, e.g. ``task 'band_gap'``) and the allowed keys. ``shared``: for a file documented as shared with
    other tools (the rehearsal TOML), unknown keys are dropped instead. Returns ``data`` without the unknown
    keys and their dotted paths (empty when strict).
    """
    names = set(allowed)
    prefix = f"{path}." if path else ""
    unknown = sorted(map(str, set(data) - names))
    if unknown and not shared:
        where = f" in '{path}'" if path else ""
        lead = f"{label}: " if label else ""
        listed = ", ".join(f"'{prefix}{key}'" for key in unknown)
        raise ValueError(
            f"{lead}unknown key{'s' if len(unknown) > 1 else ''} {listed}{where} (allowed: {', '.join(sorted(names))})"
        )
    return {key: value for key, value in data.items() if key in names}, [prefix + key for key in unknown]


def known_keys_only(cls: type, data: Mapping[str, Any], *, path: str = "") -> tuple[dict[str, Any], list[str]]:
    """:func:`check_keys` with ``shared=True`` for dataclass ``cls`` and its nested dataclass fields: ``data``
    without the keys ``cls`` does not know, and the dotted paths of the keys dropped (for files shared with
    other tools, which warn instead of failing). The values kept are checked later by :func:`from_mapping`."""
    hints = typing.get_type_hints(cls)
    kept, dropped = check_keys(data, (f.name for f in dataclasses.fields(cls)), path=path, shared=True)
    for key, value in kept.items():
        nested = _dataclass_in(hints.get(key))
        if nested is not None and isinstance(value, Mapping):
            kept[key], inner = known_keys_only(nested, value, path=f"{path}.{key}" if path else str(key))
            dropped += inner
    return kept, dropped
