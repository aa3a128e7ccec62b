"""Faults inside a sweep: a worker killed with SIGKILL mid-trial, out-of-memory and CUDA errors,
and a worker whose trial budget is running in other workers."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import weakref

import optuna
import pytest
import torch
from mlflow import MlflowClient
from optuna.trial import TrialState

import pipeline.study.loop as study_module
from pipeline.config import PROJECT_ROOT, compose
from pipeline.study.budget import progress
from pipeline.study.storage import make_storage
from pipeline.tracking.store import tracking_uri
from pipeline.training import memory
from pipeline.training.module import ChestXrayModule
from tests.sweep_store import run_sweep, study_of, trial_runs
from tests.training.broken_cuda import broken_cuda

STUDY = "synthetic-resnet18"

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # The tests ask and tell trials themselves, as another worker would.
    pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used"),
]


def _by_trial(runs: list) -> dict[int, object]:
    numbers = [int(r.data.tags["optuna_trial"]) for r in runs]
    assert len(numbers) == len(set(numbers)), f"a trial with two MLflow runs: {sorted(numbers)}"
    return {int(r.data.tags["optuna_trial"]): r for r in runs}


@pytest.mark.slow
def test_kill_9_mid_trial_loses_nothing_and_the_same_command_finishes(tiny_overrides):
    overrides = tiny_overrides(
        "tracking.log_model=false", "sweep.n_trials=3", "trainer.max_epochs=3",
        "trainer.early_stopping_patience=null", "sweep.pruner=none",
        "sweep.heartbeat_interval=1", "sweep.grace_period=3",
    )
    cfg = compose(overrides)
    command = [sys.executable, "-m", "pipeline.sweep", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = open(os.path.join(cfg.state_dir, "worker.log"), "w+")  # noqa: SIM115
    worker = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        # Kill once trial 0 is complete and trial 1 has logged an epoch. (The stores are read
        # only once the worker has created them: creating a fresh SQLite store is not safe to
        # race.)
        deadline = time.time() + 240
        victim = None
        while victim is None and time.time() < deadline and worker.poll() is None:
            time.sleep(0.3)
            if "\ntrial 1 (" not in _tail(log):
                continue
            runs = _by_trial(trial_runs(cfg, STUDY))
            if 0 in runs and runs[0].info.status == "FINISHED" and 1 in runs:
                client = MlflowClient(tracking_uri(cfg))
                if client.get_metric_history(runs[1].info.run_id, "val_auroc"):
                    victim = runs[1]
        assert victim is not None, _tail(log)
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    study = study_of(overrides)
    before = {t.number: t for t in study.trials}
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING
    assert MlflowClient(tracking_uri(cfg)).get_run(victim.info.run_id).info.status == "RUNNING"

    time.sleep(4)  # past sweep.grace_period since trial 1's last heartbeat
    rerun = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "closed 1 trial run(s) left RUNNING by a stopped worker" in rerun.stdout

    study = study_of(overrides)
    trials = {t.number: t for t in study.trials}
    assert sorted(trials) == [0, 1, 2, 3]  # no number twice
    assert progress(study)[0] == 3
    # Trial 0 was kept as it was, never run again.
    assert trials[0].state == TrialState.COMPLETE and trials[0].value == before[0].value
    assert trials[0].user_attrs["mlflow_run_id"] == before[0].user_attrs["mlflow_run_id"]
    # Trial 1 failed by the heartbeat, retried with its parameters as trial 2.
    assert trials[1].state == TrialState.FAIL
    assert trials[2].system_attrs["failed_trial"] == 1
    assert trials[2].params == trials[1].params
    assert trials[2].state == trials[3].state == TrialState.COMPLETE

    runs = _by_trial(trial_runs(cfg, STUDY))
    assert sorted(runs) == [0, 1, 2, 3]  # one MLflow run per trial
    killed = runs[1]
    assert killed.info.run_id == victim.info.run_id and killed.info.status == "KILLED"
    assert killed.data.tags["error"] == "worker died during this trial"
    assert all(runs[n].info.status == "FINISHED" for n in (0, 2, 3))
    assert runs[0].info.run_id == before[0].user_attrs["mlflow_run_id"]
    # The dead invocation's study run is closed too; no run of the study is left RUNNING.
    client = MlflowClient(tracking_uri(cfg))
    dead_parent = client.get_run(killed.data.tags["mlflow.parentRunId"])
    assert dead_parent.info.status == "KILLED"
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs.values()}
    assert {client.get_run(p).info.status for p in parents - {dead_parent.info.run_id}} == {
        "FINISHED"}


def test_out_of_memory_and_cuda_errors_fail_one_trial_each_and_the_next_starts_clean(
    tiny_overrides, monkeypatch
):
    overrides = tiny_overrides("tracking.log_model=false", "sweep.n_trials=3",
                               "trainer.max_epochs=1", "sweep.pruner=none")
    cfg = compose(overrides)
    errors = [
        lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        lambda: RuntimeError("CUDA error: an illegal memory access was encountered"),
    ]
    # After a real CUDA error, freeing the cache raises too (a GPU's broken context; made to
    # raise here, on every trial): each trial still fails with its own error, the next runs.
    monkeypatch.setattr(memory, "torch", broken_cuda())
    real_step = ChestXrayModule.training_step
    trained: list[tuple[weakref.ref, weakref.ref]] = []  # each trial's module and network
    alive_at_start: list[list[bool]] = []

    def training_step(module, batch, batch_idx):
        if not trained or trained[-1][0]() is not module:  # a trial's first batch
            gc.collect()
            alive_at_start.append([m() is not None or n() is not None for m, n in trained])
            trained.append((weakref.ref(module), weakref.ref(module.net)))
        if len(trained) <= len(errors):
            raise errors[len(trained) - 1]()
        return real_step(module, batch, batch_idx)

    monkeypatch.setattr(ChestXrayModule, "training_step", training_step)
    summary = run_sweep(cfg, overrides, echo=False)

    assert (summary["n_fail"], summary["n_complete"]) == (2, 1)
    trials = study_of(overrides).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert trials[1].user_attrs["error"].startswith("RuntimeError: CUDA error: an illegal")
    runs = _by_trial(trial_runs(cfg, STUDY))
    for number, reason in ((0, "OutOfMemoryError: CUDA out of memory"),
                           (1, "RuntimeError: CUDA error: an illegal memory access")):
        assert runs[number].info.status == "FAILED"
        assert runs[number].data.tags["state"] == "FAIL"
        assert runs[number].data.tags["error"].startswith(reason)
    assert runs[2].info.status == "FINISHED"
    # Each trial found the modules and networks of the failed ones freed.
    assert alive_at_start == [[], [False], [False, False]]


def test_a_worker_starts_nothing_beyond_n_trials_while_another_runs_the_last(
    tiny_overrides, monkeypatch
):
    """A trial RUNNING in another worker counts toward sweep.n_trials: this worker waits for it
    instead of starting one more, and ends once it is finished."""
    overrides = tiny_overrides("tracking.log_model=false", "sweep.n_trials=1",
                               "sweep.heartbeat_interval=1")
    cfg = compose(overrides)
    storage = make_storage(cfg)
    other_worker = optuna.load_study(study_name=study_of(overrides).study_name, storage=storage)
    running = other_worker.ask()
    storage.record_heartbeat(running._trial_id)  # alive
    waits = []

    class Clock:  # the waiting worker's clock: the other worker finishes while it waits
        monotonic = staticmethod(time.monotonic)
        time = staticmethod(time.time)

        @staticmethod
        def sleep(seconds: float) -> None:
            waits.append(seconds)
            other_worker.tell(running, 0.5)

    monkeypatch.setattr(study_module, "time", Clock)
    summary = run_sweep(cfg, overrides, echo=False)
    # It waited, and looked again well within a heartbeat interval (a dead worker's trial is
    # retried as soon as its grace period is over).
    assert len(waits) == 1 and 0 < waits[0] <= cfg.sweep.heartbeat_interval
    assert [t.number for t in study_of(overrides).trials] == [0]  # nothing asked beyond the budget
    assert summary["n_complete"] == 1 and summary["best_value"] == 0.5
    assert trial_runs(cfg, STUDY) == []


def test_a_retried_retry_counts_once(tiny_overrides):
    """Stale twice (sweep.max_retry=2): the original and the first retry are both replaced."""
    study = study_of(tiny_overrides("sweep.max_retry=2"))
    storage = study._storage
    callback = storage.get_heartbeat_stale_trial_callback()
    first = study.ask()
    storage.set_trial_state_values(first._trial_id, TrialState.FAIL)
    callback(study, storage.get_trial(first._trial_id))
    retry = study.ask()  # the queued retry
    assert retry.number == 1
    storage.set_trial_state_values(retry._trial_id, TrialState.FAIL)
    callback(study, storage.get_trial(retry._trial_id))
    second_retry = study.ask()
    study.tell(second_retry, 0.7)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL,
                                               TrialState.COMPLETE]
    assert progress(study)[0] == 1


def _tail(log) -> str:
    log.seek(0)
    return log.read()[-3000:]


optuna.logging.set_verbosity(optuna.logging.WARNING)
