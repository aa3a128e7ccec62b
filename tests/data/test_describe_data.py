"""python -m pipeline.describe_data on the real covid-chestxray sample, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FRONTAL = {"PA", "AP", "AP Supine", "AP Erect"}


def describe(*overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.describe_data", *overrides],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    sample = PROJECT_ROOT.parent / "shared" / "data" / "covid-chestxray-sample"
    if not (sample / "metadata.csv").is_file():
        pytest.skip(f"{sample} is not there")
    state = tmp_path_factory.mktemp("state")
    return describe("dataset=covid_chestxray", "dataset.image_size=64", f"state_dir={state}")


def test_last_line_is_the_summary_json(sample_run, covid_sample: Path) -> None:
    assert sample_run.returncode == 0, sample_run.stderr
    summary = json.loads(sample_run.stdout.strip().splitlines()[-1])
    meta = pd.read_csv(covid_sample / "metadata.csv", dtype=str, keep_default_na=False)
    kept = meta[(meta.modality == "X-ray") & meta.view.isin(FRONTAL)
                & ~meta.finding.str.lower().isin(["todo", ""])]
    covid = int(kept.finding.str.contains("COVID-19", case=False).sum())
    assert summary["classes"] == {"covid": covid, "non_covid": len(kept) - covid}
    assert sum(summary["splits"].values()) == len(kept) < len(meta)
    assert all(summary["splits"][s] > 0 for s in ("train", "val", "test"))
    assert summary["patient_overlap"] == 0
    assert summary["skipped"] == 0
    assert len(summary["fingerprint"]) == 16


def test_human_readable_part(sample_run) -> None:
    text = sample_run.stdout
    assert "classes: 0=covid, 1=non_covid" in text
    assert "patients in more than one split: 0" in text
    for split in ("train", "val", "test"):
        assert f"\n{split} " in text


def test_bad_root_is_one_line_error_exit_2(tmp_path: Path, state_dir: Path) -> None:
    missing = tmp_path / "nope"
    result = describe("dataset=imagefolder", f"dataset.root={missing}", f"state_dir={state_dir}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
