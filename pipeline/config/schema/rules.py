"""What OmegaConf's types cannot say about a key: the values it takes (``Literal``) and its bounds
(``Range``), declared in the schema as ``Annotated[T, ...]`` and checked once, after composition.

OmegaConf 2.3 types keys (scalars, lists, mappings, unions of scalars) and refuses unknown ones,
but has no ``Literal`` and no bounds; ``Annotated`` shows it the plain ``T`` and this module the
rest. (An Enum would put Enum members into the config every stage reads; these stay plain.)
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.common.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Bounds of a number (``low <= value <= high``, ``<`` where open); ``note`` ends the error."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, integer: bool) -> str:
        low, high = self.low, self.high
        if integer and low is not None and high is not None:
            return f"an integer from {low:g} to {high:g}"
        if low is not None and high is not None:
            return (f"in {'(' if self.low_open else '['}{low:g}, {high:g}"
                    f"{')' if self.high_open else ']'}")
        kind = "an integer" if integer else "a number"
        if low is not None:
            return f"{kind} {'above' if self.low_open else 'of at least'} {low:g}"
        return f"{kind} {'below' if self.high_open else 'of at most'} {high:g}"


@dataclass(frozen=True)
class Marks:
    """A key's ``Literal`` values and ``Range`` (either may be absent)."""

    choices: tuple[Any, ...] = ()
    bounds: Range | None = None
    integer: bool = False

    def allows(self, value: Any) -> bool:
        if value is None or any(type(value) is type(c) and value == c for c in self.choices):
            return True
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return self.bounds is not None and number and self.bounds.holds(value)

    def explain(self, key: str, value: Any) -> str:
        """The one-line error for ``key=value`` (as an override writes it): what the key takes."""
        shown = show_choice(value)
        if not self.choices and self.bounds is not None:
            return f"{key}={shown} must be {self.bounds.describe(self.integer)}{self.bounds.note}"
        options = [show_choice(c) for c in self.choices]
        if self.bounds is not None:
            options.append(self.bounds.describe(self.integer))
        listed = ", ".join(options[:-1]) + " or " + options[-1] if len(options) > 1 else options[0]
        return f"{key}={shown}: use {listed}"


def show(value: Any) -> str:
    """A value as an error names it: ``'abc'``, ``3``, ``true``, ``null``."""
    if value is None or isinstance(value, bool):
        return show_choice(value)
    if OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value))
    return repr(value)


def show_choice(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def marks_in(tp: Any) -> Marks | None:
    """The marks of a type hint (through ``Optional``), or None when it has none."""
    if _is_union(tp):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            tp = inner[0]
    if get_origin(tp) is not Annotated:
        return None
    base, *extras = get_args(tp)
    choices = tuple(c for m in extras if get_origin(m) is Literal for c in get_args(m))
    bounds = next((m for m in extras if isinstance(m, Range)), None)
    scalars = get_args(base) if _is_union(base) else (base,)
    return Marks(choices, bounds, integer=int in scalars and float not in scalars)


@cache
def marks_of(cls: type) -> Mapping[str, Marks]:
    """Field name -> its marks, for the fields of schema class ``cls`` that have some."""
    hints = get_type_hints(cls, include_extras=True)
    found = {f.name: marks_in(hints[f.name]) for f in dataclasses.fields(cls)}
    return {name: marks for name, marks in found.items() if marks is not None}


def unknown_key(key: str, cls: type) -> str:
    """The error for a key that schema class ``cls`` does not have."""
    owner = key.rpartition(".")[0] or ("the config" if cls.__name__ == "Config"
                                       else f"a {cls.__name__}")
    return f"{key} is not a config key: {owner} has {', '.join(field_names(cls))}"


@cache
def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def check(cfg: DictConfig, named: Mapping[str, str] | None = None) -> None:
    """Every marked key of a composed (resolved) config, then each schema's ``cross_check``.
    ``named`` maps a key to the name the user typed for it (an alias), for the message."""
    _walk(cfg, "", named or {})


def _walk(node: DictConfig | ListConfig, path: str, named: Mapping[str, str]) -> None:
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            if isinstance(item, DictConfig | ListConfig):
                _walk(item, f"{path}{i}.", named)
        return
    cls = OmegaConf.get_type(node)
    typed = dataclasses.is_dataclass(cls)
    marks = marks_of(cls) if typed else {}
    for key in node:
        if typed and key not in field_names(cls):  # added with +key=...: still not a key
            raise ConfigError(unknown_key(f"{path}{key}", cls))
        if OmegaConf.is_missing(node, key):
            continue
        value = node[key]
        if isinstance(value, DictConfig | ListConfig):
            _walk(value, f"{path}{key}.", named)
        elif key in marks and not marks[key].allows(value):
            full = f"{path}{key}"
            raise ConfigError(marks[key].explain(named.get(full, full), value))
    cross_check = getattr(cls, "cross_check", None)
    if cross_check is not None:
        cross_check(node, path)
