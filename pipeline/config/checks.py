"""Override checking: a value of the wrong kind for its key is one clear error, before training."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import OmegaConf

from pipeline.common.errors import ConfigError
from pipeline.config.paths import CONF_DIR

# Keys users type that set another key: the sweep's metric, direction and folds are the
# objective's.
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


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def value_overrides(overrides: Sequence[str]) -> set[str]:
    """Keys given a value (``a.b=1``), as opposed to a config group option (``optimizer=sgd``)."""
    keys = set()
    for override in overrides:
        key = key_of(override)
        if "=" in override and not override.startswith(("+", "~")) and "@" not in key and not (
            CONF_DIR / key.replace(".", "/")
        ).is_dir():
            keys.add(key)
    return keys


def check_type(key: str, default: object, value: object) -> None:
    """A value of another kind than the key's default (``batch_size=abc``) is a clear error."""
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = not OmegaConf.is_config(value), "a single value"
    elif OmegaConf.is_list(default):
        ok, kind = OmegaConf.is_list(value), "a list like [a, b]"
    else:
        ok, kind = OmegaConf.is_dict(value), "a mapping"
    if not ok:
        raise ConfigError(
            f"{key}={value!r} has the wrong type: it takes {kind} (default: {_show(default)})"
        )


def _show(value: object) -> str:
    if OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value))
    return repr(value)


def without_values(overrides: Sequence[str], values: set[str]) -> list[str]:
    """The overrides that choose groups, without those that give ``values`` a value."""
    return [o for o in overrides if key_of(o) not in values]
