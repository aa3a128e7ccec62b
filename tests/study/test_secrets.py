"""A sweep against a throwaway PostgreSQL with a password, logging to a tracking server through a
URL with credentials: the password is nowhere in the MLflow store (its database dumped, every
artifact file), the Optuna storage, the worker's state dir, or what the worker printed."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline.config import PROJECT_ROOT
from tests.study.test_distributed import mlflow_server, postgres  # noqa: F401 -- fixtures


def pg_dump(url: str) -> bytes:
    binary = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump")) or ["pg_dump"]
    proc = subprocess.run([binary[-1], url], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_a_sweep_leaves_its_storage_password_nowhere(postgres, mlflow_server,  # noqa: F811
                                                     tiny_overrides, tmp_path):
    password = postgres.split(":")[2].split("@")[0]
    tracking = mlflow_server["uri"].replace("http://", f"http://postgres:{password}@")
    state = tmp_path / "state"
    overrides = tiny_overrides("trainer.max_epochs=1", "sweep.n_trials=2",
                               f"sweep.storage={postgres}/optuna", f"tracking.uri={tracking}",
                               f"state_dir={state}")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-m", "pipeline.sweep", *overrides], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["n_complete"] + summary["n_pruned"] == 2
    assert password not in proc.stdout and password not in proc.stderr

    # What the store holds, as MLflow reads it back: the parent's command, params, config.yaml.
    client = MlflowClient(mlflow_server["uri"])
    parent = client.get_run(summary["parent_run_id"])
    command = parent.data.tags["command"]
    assert f"sweep.storage={postgres.replace(password, '***')}/optuna" in command
    assert f"tracking.uri={tracking.replace(password, '***')}" in command

    # Every byte: both databases dumped, every file of the artifact root and of the state dir.
    dumps = {name: pg_dump(f"{postgres}/{name}") for name in ("mlflow", "optuna")}
    assert all(len(d) > 10_000 for d in dumps.values())
    assert b"***@127.0.0.1" in dumps["mlflow"]  # the redacted URLs are there, passwordless
    leaks = [name for name, dump in dumps.items() if password.encode() in dump]
    files = [p for root in (mlflow_server["artifacts"], state) for p in Path(root).rglob("*")
             if p.is_file()]
    assert any(p.name == "config.yaml" for p in files)
    leaks += [str(p) for p in files if password.encode() in p.read_bytes()]
    print(f"password absent from the 2 database dumps and {len(files)} files")
    assert leaks == []
