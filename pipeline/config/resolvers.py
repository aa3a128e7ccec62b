"""OmegaConf resolvers the config files use, registered once on import."""

from __future__ import annotations

from omegaconf import OmegaConf

from pipeline.config.paths import PROJECT_ROOT

MODES = {"maximize": "max", "minimize": "min"}


def register() -> None:
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
    # trainer.monitor_mode follows objective.direction: maximize -> max, minimize -> min.
    OmegaConf.register_new_resolver(
        "mode_of", lambda direction: MODES.get(direction, direction), replace=True
    )


register()
