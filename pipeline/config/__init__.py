"""The config stage: Hydra composition of conf/, resolvers, override checking, one-line errors."""

from pipeline.common.errors import ConfigError, DataError, PipelineError, one_line
from pipeline.config.composition import compose
from pipeline.config.paths import CONF_DIR, PROJECT_ROOT, state_dir, to_yaml

__all__ = [
    "CONF_DIR",
    "PROJECT_ROOT",
    "ConfigError",
    "DataError",
    "PipelineError",
    "compose",
    "one_line",
    "state_dir",
    "to_yaml",
]
