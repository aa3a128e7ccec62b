"""OmegaConf's refusals while composing (a value of the wrong type for its schema, a key no schema
has), as one line that names the key and what it takes."""

from __future__ import annotations

import dataclasses
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    ConfigTypeError,
    OmegaConfBaseException,
    ValidationError,
)

from pipeline.common.errors import one_line
from pipeline.config.schema import field_names, marks_in, show, unknown_key

_REFUSALS = ValidationError | ConfigKeyError | ConfigAttributeError | ConfigTypeError

NO_DEFAULT = object()
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a single value"}


def schema_refusal(exc: BaseException) -> OmegaConfBaseException | None:
    """The schema's refusal behind a Hydra or OmegaConf error (None: some other error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if (isinstance(seen, _REFUSALS) and isinstance(seen.key, str)
                and dataclasses.is_dataclass(seen.object_type)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def describe(exc: BaseException) -> str:
    """One line for any OmegaConf or Hydra error: the schema's words where it refused."""
    refusal = schema_refusal(exc)
    if refusal is None:
        return one_line(exc)
    return explain(refusal, refusal.full_key) + location(exc)


def location(exc: BaseException) -> str:
    """`` (in dataset/mine)`` when Hydra says which config file held the value."""
    found = re.match(r"In '([^']+)'", str(exc))
    return f" (in {found.group(1)})" if found else ""


def explain(refusal: OmegaConfBaseException, key: str, default: Any = NO_DEFAULT) -> str:
    """``key`` is the refused key as the user typed it."""
    cls, name = refusal.object_type, refusal.key
    if name not in field_names(cls):
        return unknown_key(key, cls)
    if isinstance(refusal, ConfigTypeError):
        return f"{key} cannot be removed: the schema has it always (set it instead: {key}=...)"
    hint = get_type_hints(cls, include_extras=True)[name]
    marks = marks_in(hint)
    if marks is not None and marks.choices:
        return marks.explain(key, refusal.value)
    tail = "" if default is NO_DEFAULT else f" (default: {show(default)})"
    return f"{key}={show(refusal.value)} has the wrong type: it takes {kind_of(hint)}{tail}"


def kind_of(hint: Any) -> str:
    """What a type hint takes, in words."""
    origin = get_origin(hint)
    if origin is Annotated:
        return kind_of(get_args(hint)[0])
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        if set(inner) == {int, float}:
            return "a number"
        return " or ".join(kind_of(a) for a in inner)
    if hint in _KINDS:
        return _KINDS[hint]
    if origin is list:
        return "a list like [a, b]"
    return "a mapping"
