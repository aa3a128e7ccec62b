"""A trial left RUNNING without a single heartbeat (its worker killed between ``study.ask()`` and
the heartbeat thread's first write) is failed after sweep.grace_period: the sweep never waits
for it forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import lightning.pytorch as pl
import pytest
from optuna.trial import TrialState

from pipeline.config import PROJECT_ROOT, compose
from pipeline.study.budget import NO_HEARTBEAT
from tests.sweep_store import run_sweep, study_of

# About a minute: the grace period must outlast this worker's own trial, so that it waits first.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
GRACE = 20

ASK_AND_HANG = """
import sys, time, optuna
from pipeline.config import compose
from pipeline.study.storage import make_storage
study = optuna.load_study(study_name=sys.argv[1], storage=make_storage(compose(sys.argv[2:])))
trial = study.ask()
print("asked", trial.number, flush=True)
time.sleep(600)
"""


class KillAnotherWorkerAfterItsAsk(pl.Callback):
    """While this worker trains trial 0, another process asks trial 1 and is SIGKILLed before
    any heartbeat of it is written."""

    def __init__(self, name: str, overrides: list[str]):
        self.name, self.overrides, self.asked = name, overrides, None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.asked is not None:
            return
        worker = subprocess.Popen([sys.executable, "-c", ASK_AND_HANG, self.name, *self.overrides],
                                  cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        try:
            self.asked = worker.stdout.readline().strip()
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(
        tiny_overrides, capsys):
    overrides = tiny_overrides(
        "tracking.log_model=false", "sweep.n_trials=2", "sweep.pruner=none",
        "sweep.baselines=none", "trainer.max_epochs=1", "sweep.heartbeat_interval=1",
        f"sweep.grace_period={GRACE}",
        "sweep.timeout=150")  # a bound for the test only: without the fix it waits until here
    killer = KillAnotherWorkerAfterItsAsk(study_of(overrides).study_name, overrides)
    started = time.monotonic()
    summary = run_sweep(compose(overrides), overrides, callbacks=[killer])
    assert time.monotonic() - started < 140
    assert killer.asked == "asked 1"
    out = capsys.readouterr().out
    assert "waiting for trial(s) 1 of other workers" in out, out
    assert "or after its start if it sent none" in out
    trials = study_of(overrides).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.COMPLETE]
    assert trials[1].user_attrs["error"] == NO_HEARTBEAT
    assert trials[2].system_attrs["failed_trial"] == 1  # its retry
    assert summary["n_complete"] == 2 and summary["stop_reason"] is None
