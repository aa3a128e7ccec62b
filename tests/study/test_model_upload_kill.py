"""kill -9 mid-upload of a model (fault point ``log_model``: the weights are in the store, the
manifest not yet), on a local store and through ``make server``: the sweep run again retries the
trial, the killed run ends KILLED, and its half-written model neither loads nor registers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from pipeline.common.errors import PipelineError
from pipeline.config import PROJECT_ROOT, compose
from pipeline.tracking.model_files import MANIFEST
from pipeline.tracking.models import MODEL_PATH, load_model, model_uri
from pipeline.tracking.registry import register_champion
from pipeline.tracking.store import open_store
from tests.study.test_distributed import _free_port, start_server, stop_server
from tests.sweep_store import study_of

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")]


def sweep(overrides: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    if fault:
        env["PIPELINE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "pipeline.sweep", *overrides], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(params=["local", "server"])
def tracking(request, tmp_path):
    if request.param == "local":
        yield []
        return
    port = _free_port()
    server = start_server(port, f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts",
                          tmp_path / "server.log")
    try:
        yield [f"tracking.uri=http://127.0.0.1:{port}"]
    finally:
        stop_server(server)


def test_a_trial_killed_mid_model_upload_is_retried_and_its_half_model_never_used(
        tracking, tiny_overrides):
    overrides = tiny_overrides("trainer.max_epochs=1", "sweep.n_trials=1", "sweep.pruner=none",
                               "sweep.baselines=none", "sweep.heartbeat_interval=1",
                               "sweep.grace_period=2", "tracking.log_model=true", *tracking)
    killed = sweep(overrides, "log_model")
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    cfg = compose(overrides)
    store = open_store(cfg)
    [dead] = store.search("attributes.status = 'RUNNING' AND tags.role = 'trial'")
    files = {Path(f.path).name for f in store.client.list_artifacts(dead.info.run_id, MODEL_PATH)}
    assert files == {"weights.safetensors"}  # cut between the weights and the manifest
    with pytest.raises(PipelineError, match=f"incomplete: it has no {MANIFEST}"):
        load_model(model_uri(dead), store.uri)
    with pytest.raises(PipelineError, match="has no complete model"):
        register_champion(store, "xray-half", dead, {})

    time.sleep(3)  # past the grace period: the dead worker's trial is failed and retried
    again = sweep(overrides)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    study = study_of(overrides)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]
    assert store.get_run(dead.info.run_id).info.status == "KILLED"
    [done] = [t for t in study.trials if t.state == TrialState.COMPLETE]
    finished = store.get_run(done.user_attrs["mlflow_run_id"])
    assert finished.info.status == "FINISHED"
    assert load_model(model_uri(finished), store.uri).classes  # the retried trial's model loads
    versions = store.client.search_model_versions("name = 'xray-half'")
    assert not versions  # nothing half written was ever registered
