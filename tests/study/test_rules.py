"""A sweep's numbers mean what they say: no frozen random stages searched, study settings read
from the trials' own config, bugs that stop the sweep instead of hiding as failed trials, a
failure that repeats stops it, dead workers' runs closed, one sampler per worker."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

import pipeline.tracking.search as search
from pipeline.config import PROJECT_ROOT, compose
from pipeline.study.bookkeeping import close_orphaned_runs
from pipeline.study.identity import study_uid
from pipeline.study.loop import SweepFailed
from pipeline.study.objective import Objective
from pipeline.tracking.runs import start_run
from pipeline.tracking.schema import Role, Tag
from pipeline.tracking.store import open_store, tracking_uri
from pipeline.training.module import ChestXrayModule
from tests.sweep_store import (
    RunSpec,
    dead_pid,
    run_sweep,
    study_of,
    trial_runs,
    trial_tags,
    write_runs,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUICK = ("tracking.log_model=false", "trainer.max_epochs=1", "sweep.pruner=none")


@pytest.fixture
def lr_space(tmp_path):
    """A space that leaves the learning rate to the command line."""
    path = tmp_path / "batch_only.yaml"
    path.write_text("params:\n  dataset.batch_size: {type: categorical, choices: [16]}\n")
    return f"sweep.space={path}"


def test_on_random_weights_the_freeze_depth_is_not_searched(tiny_overrides, capsys):
    overrides = tiny_overrides(*QUICK, "sweep.n_trials=2", "sweep.sampler=random")
    run_sweep(compose(overrides), overrides)
    out = capsys.readouterr().out
    assert "backbone weights are random (backbone.pretrained=false): backbone.freeze_depth " \
           "stays 0" in out and "searches optimizer.lr, dataset.batch_size" in out
    trials = study_of(overrides).trials
    assert all(set(t.params) == {"optimizer.lr", "dataset.batch_size"} for t in trials)
    assert all(r.data.params["backbone.freeze_depth"] == "0"
               for r in trial_runs(compose(overrides), "synthetic-resnet18"))


def test_with_weights_from_a_file_the_freeze_depth_is_searched(tiny_overrides, resnet18_weights):
    overrides = tiny_overrides(*QUICK, "sweep.n_trials=2", "sweep.sampler=random",
                               f"backbone.weights_path={resnet18_weights}")
    run_sweep(compose(overrides), overrides, echo=False)
    trials = study_of(overrides).trials
    assert all("backbone.freeze_depth" in t.params for t in trials)


def test_the_pruner_budget_is_the_epochs_trials_run(state_dir, monkeypatch):
    budgets = []
    real = optuna.pruners.HyperbandPruner

    def recording(*args, **kwargs):
        budgets.append(kwargs["max_resource"])
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.pruners, "HyperbandPruner", recording)
    for more, expected in (((), 8), (("trainer.max_epochs=3",), 3)):
        overrides = [f"state_dir={state_dir}", "backbone=resnet18", "dataset.image_size=32",
                     "dataset.num_images=96", "sweep.pruner=hyperband", "sweep.n_trials=0", *more]
        # The base config says 10 epochs, the default space's fixed part 8, the command line 3.
        assert compose(overrides).trainer.max_epochs == (10 if not more else 3)
        with pytest.raises(SweepFailed):  # no trial asked for: nothing to stand on
            run_sweep(compose(overrides), overrides, echo=False)
        assert budgets[-1] == expected


def test_a_bug_inside_a_trial_stops_the_sweep_with_its_traceback(tiny_overrides, monkeypatch):
    def training_step(module, batch, batch_idx):
        raise KeyError("a bug, not a failed training")

    monkeypatch.setattr(ChestXrayModule, "training_step", training_step)
    overrides = tiny_overrides(*QUICK, "sweep.n_trials=3")
    cfg = compose(overrides)
    with pytest.raises(KeyError, match="a bug"):
        run_sweep(cfg, overrides, echo=False)
    trials = study_of(overrides).trials
    assert [t.state for t in trials] == [TrialState.FAIL]  # nothing more was tried
    (run,) = trial_runs(cfg, "synthetic-resnet18")
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("KeyError")
    parent = MlflowClient(tracking_uri(cfg)).get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FAILED"


@pytest.mark.slow
def test_a_sweep_where_every_trial_failed_exits_1(tiny_overrides, lr_space):
    overrides = tiny_overrides(*QUICK, lr_space, "sweep.n_trials=2", "optimizer=sgd",
                               "optimizer.lr=1e30", "sweep.max_consecutive_failures=0")
    proc = subprocess.run([sys.executable, "-m", "pipeline.sweep", *overrides],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "error: the sweep failed: no trial completed or was pruned" in proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (last["n_complete"], last["n_pruned"], last["n_fail"]) == (0, 0, 2)


def test_the_same_failure_k_times_in_a_row_stops_the_sweep(tiny_overrides, lr_space):
    overrides = tiny_overrides(*QUICK, lr_space, "sweep.n_trials=6", "optimizer=sgd",
                               "optimizer.lr=1e30", "sweep.max_consecutive_failures=2")
    cfg = compose(overrides)
    with pytest.raises(SweepFailed, match="2 consecutive trials failed with the same error") as err:
        run_sweep(cfg, overrides, echo=False)
    assert "loss became" in str(err.value)
    assert err.value.summary["stop_reason"] == str(err.value)
    assert len(study_of(overrides).trials) == 2  # the budget of 6 was not burnt
    run = trial_runs(cfg, "synthetic-resnet18")[0]
    parent = MlflowClient(tracking_uri(cfg)).get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FAILED"
    assert parent.data.tags["stop_reason"].startswith("2 consecutive trials failed")


def test_orphaned_trial_runs_are_found_past_one_page(tiny_overrides, monkeypatch):
    overrides = tiny_overrides()
    cfg = compose(overrides)
    study = study_of(overrides)
    store = open_store(cfg)
    client = store.client
    dead = {Tag.STUDY_NAME: study.study_name, Tag.STUDY_UID: study_uid(study),
            Tag.PID: dead_pid()}  # its worker died
    parent = start_run(store, Role.STUDY, **dead)
    specs = [RunSpec({**trial_tags("resnet18", n), **dead, Tag.PARENT: parent},
                     status="RUNNING") for n in range(25)]
    write_runs(store, specs)
    monkeypatch.setattr(search, "PAGE_SIZE", 10)  # three pages
    assert close_orphaned_runs(store, study) == 25
    statuses = {client.get_run(s.run_id).info.status for s in specs}
    assert statuses == {"KILLED"}
    assert client.get_run(parent).info.status == "KILLED"  # its dead worker's


@pytest.mark.slow
def test_one_sampler_per_worker_and_a_study_repeats_from_its_seed(tmp_path, monkeypatch):
    samplers = []
    real = Objective.train

    def train(self, trial):
        samplers.append(self.study.sampler)
        return real(self, trial)

    monkeypatch.setattr(Objective, "train", train)
    params = []
    for name in ("a", "b"):
        overrides = [f"state_dir={tmp_path / name}", "backbone=resnet18", "dataset.image_size=32",
                     "dataset.num_images=96", "trainer.progress_bar=false", *QUICK,
                     "sweep.n_trials=3", "sweep.startup_trials=1"]
        run_sweep(compose(overrides), overrides, echo=False)
        params.append([t.params for t in study_of(overrides).trials])
    assert len({id(s) for s in samplers[:3]}) == 1 and samplers[0] is not samplers[3]
    assert isinstance(samplers[0], optuna.samplers.TPESampler)
    assert params[0] == params[1]  # the same seed, the same trials


@pytest.mark.slow
def test_running_the_same_command_again_draws_new_values(tiny_overrides):
    """A second invocation adds trials: seeded like the first, it would draw the first one's
    values again and spend its budget on repeats."""
    overrides = tiny_overrides(*QUICK, "sweep.n_trials=1", "sweep.sampler=random")
    run_sweep(compose(overrides), overrides, echo=False)
    overrides = tiny_overrides(*QUICK, "sweep.n_trials=2", "sweep.sampler=random")
    run_sweep(compose(overrides), overrides, echo=False)
    first, second = (t.params for t in study_of(overrides).trials)
    assert first["optimizer.lr"] != second["optimizer.lr"]
