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


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Base config plus Hydra overrides (``key=value``, ``group=option``), fully resolved.

    Raises ConfigError with Hydra's own explanation (it names the key and the valid options).
    """
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad config or override: {one_line(exc)}") from exc
    return cfg


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
