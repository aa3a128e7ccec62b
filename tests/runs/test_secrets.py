"""A password in a storage URL given on the command line reaches no param, tag, artifact or
output of a run (the store is searched byte for byte)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from pipeline.config import compose
from pipeline.study.bookkeeping import study_tags
from pipeline.study.space import load_space
from pipeline.tracking.schema import Tag
from tests.sweep_store import run_module

PASSWORD = "Pw-7d2a90"  # noqa: S105 -- a made-up one, searched for
STORAGE = f"postgresql://sweeper:{PASSWORD}@127.0.0.1:9/optuna"


def files_holding(root: Path, secret: str) -> tuple[list[str], int]:
    """The files under ``root`` whose bytes hold ``secret``, and how many files were searched."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return [str(p) for p in files if secret.encode() in p.read_bytes()], len(files)


@pytest.mark.slow
def test_a_storage_password_is_in_no_param_artifact_tag_or_output(tiny_overrides, state_dir):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"
    proc = run_module("pipeline.train", *tiny_overrides(
        "trainer.max_epochs=1", "tracking.log_model=false", f"sweep.storage={STORAGE}"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert PASSWORD not in proc.stdout + proc.stderr
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]

    client = MlflowClient(f"sqlite:///{state_dir / 'mlflow.db'}")
    run = client.get_run(run_id)
    redacted = "postgresql://sweeper:***@127.0.0.1:9/optuna"
    assert run.data.params["sweep.storage"] == redacted
    assert not [k for k, v in {**run.data.params, **run.data.tags}.items() if PASSWORD in v]
    logged = OmegaConf.load(client.download_artifacts(run_id, "config.yaml", str(state_dir)))
    assert logged.sweep.storage == redacted
    leaks, searched = files_holding(state_dir, PASSWORD)
    assert searched > 3 and leaks == [], leaks


def test_the_study_runs_command_tag_hides_the_password():
    overrides = [f"sweep.storage={STORAGE}", "sweep.n_trials=2"]
    cfg = compose(overrides)
    study = optuna.create_study(study_name="name")  # in memory: the tag needs no storage
    tags = study_tags(cfg, load_space(str(cfg.sweep.space), cfg), "fp", study, overrides)
    assert tags[Tag.COMMAND] == ("python -m pipeline.sweep sweep.storage=postgresql://sweeper:***"
                                 "@127.0.0.1:9/optuna sweep.n_trials=2")
