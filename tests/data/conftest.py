"""Fixtures of the data tests; the file helpers live in xray_files.py beside this file."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
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


@pytest.fixture
def deadline() -> Iterator[None]:
    """A scan that blocks (on a FIFO, say) fails the test instead of hanging the suite."""

    def expired(*_):
        raise TimeoutError("the scan did not finish within 60 s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
