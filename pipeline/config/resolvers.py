"""OmegaConf resolvers the config files use, registered once on import."""

from __future__ import annotations

from omegaconf import OmegaConf

from pipeline.config.paths import PROJECT_ROOT

MODES = {"maximize": "max", "minimize": "min"}


def timm_input_size(timm_name: str) -> int:
    """The square input size timm's data config gives a network (``backbone.input_size``)."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    from pipeline.common.errors import ConfigError

    pcfg = get_pretrained_cfg(str(timm_name))
    if pcfg is None:
        raise ConfigError(f"timm knows no network {timm_name!r}: fix backbone.timm_name")
    return int(resolve_data_config(pretrained_cfg=pcfg.to_dict())["input_size"][-1])


def register() -> None:
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
    # trainer.monitor_mode follows objective.direction: maximize -> max, minimize -> min.
    OmegaConf.register_new_resolver(
        "mode_of", lambda direction: MODES.get(direction, direction), replace=True
    )
    OmegaConf.register_new_resolver("timm_input_size", timm_input_size, replace=True)


register()
