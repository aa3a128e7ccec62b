"""Compose the Hydra config tree (conf/) with overrides: how every entry point gets a config."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from pipeline.common.errors import ConfigError, one_line
from pipeline.config import resolvers  # noqa: F401 -- registers the resolvers conf/ uses
from pipeline.config.checks import check_type, value_overrides, with_aliases, without_values
from pipeline.config.paths import CONF_DIR


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Base config plus Hydra overrides (``key=value``, ``group=option``), fully resolved.

    Raises ConfigError with Hydra's own explanation (it names the key and the valid options).
    ``sweep.metric`` and ``sweep.direction`` set ``objective.*`` (config.checks.ALIASES).
    """
    overrides = with_aliases(overrides)
    cfg = _compose(config_name, list(overrides))
    resolve_auto_weights(cfg)
    values = value_overrides(overrides)
    if values:
        # Same groups, no values: what each overridden key holds by default, to check its type.
        reference = _compose(config_name, without_values(overrides, values))
        for key in values:
            check_type(key, OmegaConf.select(reference, key), OmegaConf.select(cfg, key))
    return cfg


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name, overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"bad config or override: {one_line(exc)}") from exc
    return cfg


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
    value = dataset != "synthetic"
    with open_dict(cfg):
        backbone.pretrained = value
