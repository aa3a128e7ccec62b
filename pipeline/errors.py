"""User-facing errors: one line that names what is wrong and how to fix it."""

from __future__ import annotations


class PipelineError(Exception):
    """Bad input or configuration. Entry points print it as one line and exit non-zero."""


class ConfigError(PipelineError):
    """A config key, value or override is wrong."""


class DataError(PipelineError):
    """The dataset on disk cannot be used as configured."""
