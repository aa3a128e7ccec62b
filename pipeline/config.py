"""Compose the Hydra config tree (conf/) with overrides: how every entry point gets a config."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = Path(os.environ.get("PIPELINE_CONF_DIR", PROJECT_ROOT / "conf"))

OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
# trainer.monitor_mode follows sweep.direction: maximize -> max, minimize -> min.
OmegaConf.register_new_resolver(
    "mode_of", lambda direction: {"maximize": "max", "minimize": "min"}.get(direction, direction),
    replace=True,
)


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Base config plus Hydra overrides (``key=value``, ``group=option``), fully resolved.

    Raises ConfigError with Hydra's own explanation (it names the key and the valid options).
    """
    cfg = _compose(config_name, list(overrides))
    values = _value_overrides(overrides)
    if values:
        # Same groups, no values: what each overridden key holds by default, to check its type.
        reference = _compose(config_name, [o for o in overrides if _key(o) not in values])
        for key in values:
            _check_type(key, OmegaConf.select(reference, key), OmegaConf.select(cfg, key))
    return cfg


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name, overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad config or override: {one_line(exc)}") from exc
    return cfg


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _value_overrides(overrides: Sequence[str]) -> set[str]:
    """Keys given a value (``a.b=1``), as opposed to a config group option (``optimizer=sgd``)."""
    keys = set()
    for override in overrides:
        key = _key(override)
        if "=" in override and not override.startswith(("+", "~")) and "@" not in key and not (
            CONF_DIR / key.replace(".", "/")
        ).is_dir():
            keys.add(key)
    return keys


def _check_type(key: str, default: object, value: object) -> None:
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


def one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf messages span lines (key, then valid options); fold them into one."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    drop = ("full_key:", "object_type", "reference_type", "provider=", "Config search path")
    lines = [ln for ln in lines if not ln.startswith(drop)]
    text = "; ".join(lines) or type(exc).__name__
    return re.sub(r":;\s*", ": ", text)


def state_dir(cfg: DictConfig) -> Path:
    """Where runtime state lives (MLflow store, Optuna storage, caches); created on demand."""
    path = Path(cfg.state_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
