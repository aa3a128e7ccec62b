"""Keys users type that set another key: the sweep's metric, direction and folds are the
objective's (conf/sweep holds interpolations of them)."""

from __future__ import annotations

from collections.abc import Sequence

ALIASES = {"sweep.metric": "objective.metric", "sweep.direction": "objective.direction",
           "sweep.cv_folds": "objective.cv_folds"}


def with_aliases(overrides: Sequence[str]) -> list[str]:
    """The overrides with every aliased key written as the key it sets."""
    out = []
    for override in overrides:
        key = key_of(override)
        if key in ALIASES and "=" in override:
            prefix = override[: len(override) - len(override.lstrip("+~"))]
            override = f"{prefix}{ALIASES[key]}={override.split('=', 1)[1]}"
        out.append(override)
    return out


def typed_names(overrides: Sequence[str]) -> dict[str, str]:
    """Key set -> the alias the user typed for it, so an error names what was typed."""
    return {ALIASES[k]: k for k in map(key_of, overrides) if k in ALIASES}


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")
