"""Three real workers (``python -m pipeline.sweep``) on one machine share one SQLite study
storage and one SQLite MLflow store: no "database is locked" stops any of them, and the study
ends with exactly N finished trials, one MLflow run each, nothing left RUNNING."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from pipeline.config import PROJECT_ROOT, compose
from pipeline.tracking.store import tracking_uri
from tests.sweep_store import study_of

WORKERS, N_TRIALS = 3, 6


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_three_workers_on_one_sqlite_storage_and_store(tiny_overrides, state_dir) -> None:
    overrides = tiny_overrides(
        "tracking.log_model=false", "sweep.sampler=random", "sweep.pruner=none",
        "sweep.baselines=none", "trainer.max_epochs=1", f"sweep.n_trials={N_TRIALS}",
        "sweep.heartbeat_interval=1")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    workers = [subprocess.Popen([sys.executable, "-m", "pipeline.sweep", *overrides],
                                cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
               for _ in range(WORKERS)]
    for i, worker in enumerate(workers):
        out, _ = worker.communicate(timeout=900)
        (state_dir / f"worker{i}.log").write_text(out)
        assert worker.returncode == 0, out[-3000:]
        assert "Traceback" not in out, out[-3000:]

    cfg = compose(overrides)
    for db in ("optuna.db", "mlflow.db"):
        con = sqlite3.connect(state_dir / db)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        con.close()
    trials = study_of(overrides).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))
    client = MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(str(cfg.tracking.experiment))
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert sorted(int(r.data.tags["optuna_trial"]) for r in children) == list(range(N_TRIALS))
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {r.info.run_id for r in children}
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    assert len([r for r in runs if r.data.tags.get("role") == "study"]) == WORKERS
