"""User-facing errors: one line that names what is wrong and how to fix it."""

from __future__ import annotations

import re


class PipelineError(Exception):
    """Bad input or configuration. Entry points print it as one line and exit non-zero."""


class ConfigError(PipelineError):
    """A config key, value or override is wrong."""


class DataError(PipelineError):
    """The dataset on disk cannot be used as configured."""


def one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf messages span lines (key, then valid options); fold them into one."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    drop = ("full_key:", "object_type", "reference_type", "provider=", "Config search path")
    lines = [ln for ln in lines if not ln.startswith(drop)]
    text = "; ".join(lines) or type(exc).__name__
    return re.sub(r":;\s*", ": ", text)
