"""Fixtures of the data tests; the file helpers live in xray_files.py beside this file."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from pipeline.config import compose

# Test modules import their file helpers with `from xray_files import ...`.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def make_cfg(state_dir: Path) -> Callable[..., DictConfig]:
    """compose() with the test's own state dir."""

    def make(*overrides: str) -> DictConfig:
        return compose([*overrides, f"state_dir={state_dir}"])

    return make
