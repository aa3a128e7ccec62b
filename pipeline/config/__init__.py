"""The config stage: Hydra composition of conf/ checked against one schema (pipeline.config.schema),
resolvers, one-line errors."""

from pipeline.common.errors import ConfigError, DataError, PipelineError, one_line
from pipeline.config.composition import compose
from pipeline.config.explain import describe as describe_error
from pipeline.config.paths import CONF_DIR, PROJECT_ROOT, state_dir, to_yaml
from pipeline.config.schema import check as check_values

__all__ = [
    "CONF_DIR",
    "PROJECT_ROOT",
    "ConfigError",
    "DataError",
    "PipelineError",
    "check_values",
    "compose",
    "describe_error",
    "one_line",
    "state_dir",
    "to_yaml",
]
