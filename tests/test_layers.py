"""The import contracts in pyproject.toml hold for the package, and a wrong import breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.config import PROJECT_ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_every_stage_imports_only_the_stages_below_it():
    proc = _lint(PROJECT_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_lower_stage_importing_a_higher_one_breaks_the_contract(tmp_path):
    shutil.copytree(PROJECT_ROOT / "pipeline", tmp_path / "pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # The training stage asking the sweep for something: upstream, forbidden.
    (tmp_path / "pipeline" / "training" / "shortcut.py").write_text(
        "from pipeline.study.storage import storage_url  # noqa: F401\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert "pipeline.training.shortcut -> pipeline.study.storage" in proc.stdout


def test_a_module_outside_every_layer_breaks_the_contract(tmp_path):
    """The contract is exhaustive: a new package of pipeline must be given its layer."""
    shutil.copytree(PROJECT_ROOT / "pipeline", tmp_path / "pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "pipeline" / "stray.py").write_text('"""Nowhere in the layers."""\n')
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert "pipeline.stray" in proc.stdout
