"""kill -9 at every stage (the process kills itself at a named fault point, PIPELINE_FAULT), then
the same command again: it completes, no run is left RUNNING, no trial is lost, re-run or
numbered twice, and no torn cache entry is read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from pipeline.config import PROJECT_ROOT, compose
from pipeline.data.bundle import load_data
from pipeline.study.budget import progress
from pipeline.tracking.store import tracking_uri
from tests.data.xray_files import write_class_tree
from tests.sweep_store import run_module, study_of, sweep_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def sweep(overrides: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(ENV, PIPELINE_FAULT=fault) if fault else ENV
    return subprocess.run([sys.executable, "-m", "pipeline.sweep", *overrides], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def nothing_left_running(cfg) -> None:
    client = MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert running == [], [(r.data.tags.get("role"), r.info.run_id) for r in running]


@pytest.mark.parametrize("fault", ["decode", "features", "epoch", "log_model"])
def test_a_sweep_killed_at_any_stage_finishes_when_run_again(fault, state_dir, tmp_path,
                                                             resnet18_weights):
    root = tmp_path / "images"
    write_class_tree(root, {"covid": 12, "normal": 12})
    overrides = [
        f"state_dir={state_dir}", "backbone=resnet18", "trainer.progress_bar=false",
        "dataset=imagefolder", f"dataset.root={root}", "dataset.image_size=32",
        "dataset.batch_size=8", "backbone.pretrained=false",
        "sweep.n_trials=2", "sweep.pruner=none", "trainer.max_epochs=2",
        "sweep.heartbeat_interval=1", "sweep.grace_period=2", "sweep.baselines=none",
        f"backbone.weights_path={resnet18_weights}", "backbone.freeze_depth=5",
        f"tracking.log_model={'true' if fault == 'log_model' else 'false'}"]
    cfg = compose(overrides)
    killed = sweep(overrides, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    time.sleep(3)  # past the grace period: the dead worker's trial is failed and retried
    again = sweep(overrides)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]

    study = study_of(overrides)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert progress(study)[0] == 2
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2  # nothing finished was lost, nothing run twice
    assert len({t.user_attrs["mlflow_run_id"] for t in complete}) == 2
    nothing_left_running(cfg)
    # No torn entry was read: the cache serves what a clean state directory computes.
    fresh = load_data(compose([*overrides, f"state_dir={tmp_path / 'fresh'}"]))
    assert load_data(cfg).fingerprint == fresh.fingerprint


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return sweep_store(tmp_path_factory.mktemp("sweep"))


def selections(store, name: str) -> list:
    return store.client.search_runs([store.experiment_id],
                                    f"tags.role = 'selection' AND tags.model_name = '{name}'")


@pytest.mark.parametrize("fault", ["select_test", "register"])
def test_select_best_killed_mid_test_or_mid_registration_completes_when_run_again(store, fault):
    name = f"xray-kill-{fault}"
    args = [*store.overrides, "select.bootstrap=100", f"select.model_name={name}"]
    done_before = store.client.search_runs(
        [store.experiment_id], f"tags.role = 'selection' AND tags.data_fingerprint = "
        f"'{store.fingerprint}'")
    killed = subprocess.run([sys.executable, "-m", "pipeline.select_best", *args],
                            cwd=PROJECT_ROOT, env=dict(ENV, PIPELINE_FAULT=fault),
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    client = store.client
    (half,) = selections(store, name)
    assert half.info.status == "RUNNING"  # its process died with it open
    artifacts = {a.path for a in client.list_artifacts(half.info.run_id)}
    if fault == "select_test":  # half written: its values logged, its artifacts not
        assert half.data.metrics["test_uses"] == len(done_before) + 1 and artifacts == set()
        assert client.search_model_versions(f"name = '{name}'") == []
    if fault == "register":  # the version exists, its alias not yet: never half registered
        assert "comparison.md" in artifacts
        versions = client.search_model_versions(f"name = '{name}'")
        assert len(versions) == 1 and not versions[0].aliases
    again = run_module("pipeline.select_best", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 1  # the killed registration's version, completed, not a second
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags["run_id"] == champion.run_id  # fully tagged before the alias moved
    assert client.get_run(champion.run_id).info.status == "FINISHED"
    nothing_left_running(store.cfg)
    # The killed selection is closed KILLED and still counted as a use of the test split: it
    # had tested the split (and may have printed what it found) before it died.
    runs = {r.info.run_id: r for r in selections(store, name)}
    dead = runs.pop(half.info.run_id)
    assert dead.info.status == "KILLED" and "died before the run ended" in dead.data.tags["error"]
    (made,) = runs.values()
    assert made.info.status == "FINISHED"
    assert made.data.tags["test_uses"] == str(len(done_before) + 2)
    assert json.loads(again.stdout.strip().splitlines()[-1])["test_uses"] == len(done_before) + 2
    assert champion.tags["selection_run_id"] == made.info.run_id


def test_a_rerun_killed_mid_epoch_completes_when_run_again(store):
    run_id = store.trials["resnet18"][1]
    args = [run_id, store.overrides[0], "trainer.max_epochs=2"]  # a second batch to die in
    killed = subprocess.run([sys.executable, "-m", "pipeline.rerun", *args],
                            cwd=PROJECT_ROOT, env=dict(ENV, PIPELINE_FAULT="epoch"),
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    again = subprocess.run([sys.executable, "-m", "pipeline.rerun", *args],
                           cwd=PROJECT_ROOT, env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    reruns = store.client.search_runs([store.experiment_id],
                                      f"tags.rerun_of = '{run_id}'")
    assert sorted(r.info.status for r in reruns) == ["FINISHED", "KILLED"]
    dead = next(r for r in reruns if r.info.status == "KILLED")
    assert "died before the run ended" in dead.data.tags["error"]
    nothing_left_running(store.cfg)
