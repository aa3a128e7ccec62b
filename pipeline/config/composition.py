"""Compose the Hydra config tree (conf/) with overrides: how every entry point gets a config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from pipeline.common.errors import ConfigError, one_line
from pipeline.config import resolvers  # noqa: F401 -- registers the resolvers conf/ uses
from pipeline.config.aliases import key_of, typed_names, with_aliases
from pipeline.config.explain import NO_DEFAULT, explain, location, schema_refusal
from pipeline.config.paths import CONF_DIR
from pipeline.config.schema import check
from pipeline.config.targets import check_targets


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Base config plus Hydra overrides (``key=value``, ``group=option``), fully resolved and
    checked against the schema (pipeline.config.schema) once.

    Raises ConfigError naming the key and what it takes (or Hydra's own explanation, which lists
    a group's options). ``sweep.metric`` and ``sweep.direction`` set ``objective.*``
    (config.aliases).
    """
    named = typed_names(overrides)
    overrides = with_aliases(overrides)
    cfg = _compose(config_name, overrides, named)
    check(cfg, named)
    check_targets(cfg)
    resolve_auto_weights(cfg)
    return cfg


def _compose(config_name: str, overrides: list[str], named: Mapping[str, str]) -> DictConfig:
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name, overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        refusal = schema_refusal(exc)
        if refusal is None:
            raise ConfigError(f"bad config or override: {one_line(exc)}") from exc
        key = refusal.full_key
        default = _default(config_name, overrides, key)
        raise ConfigError(explain(refusal, named.get(key, key), default) + location(exc)) from exc
    return cfg


def _default(config_name: str, overrides: list[str], key: str) -> Any:
    """What ``key`` holds without the overrides that set it (none when no override did)."""
    rest = [o for o in overrides if key_of(o) != key]
    if len(rest) == len(overrides):
        return NO_DEFAULT
    try:
        return OmegaConf.select(_compose(config_name, rest, {}), key, default=NO_DEFAULT)
    except ConfigError:
        return NO_DEFAULT


def resolve_auto_weights(cfg: DictConfig) -> None:
    """``backbone.pretrained=auto``: ImageNet weights on every dataset but the synthetic one
    (whose generated images are there to try the pipeline offline)."""
    backbone = cfg.get("backbone")
    if backbone is None or isinstance(backbone.get("pretrained"), bool):
        return
    if str(backbone.get("pretrained")).lower() != "auto":
        raise ConfigError(f"backbone.pretrained={backbone.get('pretrained')!r}: use auto, true "
                          "or false")
    dataset = str(OmegaConf.select(cfg, "dataset.name", default=""))
    with open_dict(cfg):
        backbone.pretrained = dataset != "synthetic"
