"""Shared fixtures: every test gets its own state dir, so no test touches the project's mlruns/."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "covid-chestxray-sample"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def covid_sample() -> Path:
    """The real covid-chestxray-dataset sample beside the project; skipped only when absent."""
    if not (SHARED_SAMPLE / "metadata.csv").is_file():
        pytest.skip(f"{SHARED_SAMPLE} is not there")
    return SHARED_SAMPLE
