"""Where the project and its runtime state are on disk."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.common.urls import redact_tree

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = Path(os.environ.get("PIPELINE_CONF_DIR", PROJECT_ROOT / "conf"))


def state_dir(cfg: DictConfig) -> Path:
    """Where runtime state lives (MLflow store, Optuna storage, caches); created on demand."""
    path = Path(cfg.state_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as it is stored (the config.yaml artifact): every URL's password
    hidden (a re-run gets its stores from its own command line, not from this file)."""
    return OmegaConf.to_yaml(OmegaConf.create(redact_tree(OmegaConf.to_container(cfg,
                                                                                 resolve=True))))
