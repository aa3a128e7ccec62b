"""Real tiny studies: Optuna storage and MLflow store read back and checked against each other."""

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
from pipeline.tracking.store import tracking_uri
from pipeline.training.module import ChestXrayModule
from tests.sweep_store import run_sweep, study_of, trial_runs

TINY_SWEEP = ("tracking.log_model=false", "sweep.sampler=random")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def sweep(tiny_overrides):
    """``sweep(*more)`` -> (cfg, overrides): a tiny study's config."""

    def make(*more: str):
        overrides = tiny_overrides(*TINY_SWEEP, *more)
        return compose(overrides), overrides

    return make


@pytest.mark.slow
def test_a_study_matches_its_mlflow_children_and_resumes_to_the_total(sweep):
    cfg, overrides = sweep("sweep.n_trials=3")
    first = run_sweep(cfg, overrides, echo=False)
    study = study_of(overrides)
    assert len(study.trials) == 3
    assert first["n_complete"] + first["n_pruned"] + first["n_fail"] == 3

    client = MlflowClient(tracking_uri(cfg))
    parent = client.get_run(first["parent_run_id"])
    assert parent.data.tags["role"] == "study"
    assert parent.data.tags["study_name"] == first["study_name"]
    assert first["study_name"].startswith("synthetic-resnet18-")  # and its data and settings
    assert parent.data.tags["backbone"] == "resnet18"
    assert parent.data.tags["dataset"] == "synthetic"
    assert parent.data.tags["sweep_space"] == "default"
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "default.yaml" in artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    assert parent.data.metrics["best_value"] == pytest.approx(first["best_value"])

    # Resume: the same command with a larger total adds trials, never repeats a number.
    cfg, overrides = sweep("sweep.n_trials=5")
    second = run_sweep(cfg, overrides, echo=False)
    study = study_of(overrides)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(5))
    assert second["parent_run_id"] != first["parent_run_id"]

    children = trial_runs(cfg, "synthetic-resnet18")
    assert len(children) == 5  # exactly one MLflow run per trial
    by_number = {int(r.data.tags["optuna_trial"]): r for r in children}
    assert sorted(by_number) == numbers
    status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.data.tags["state"] == trial.state.name
        assert run.info.status == status[trial.state.name]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        if trial.state == TrialState.COMPLETE:
            assert run.data.metrics["objective"] == pytest.approx(trial.value)
        for key, value in trial.params.items():
            assert run.data.params[key] == str(value)
    parents = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert parents == {first["parent_run_id"], second["parent_run_id"]}
    best = by_number[study.best_trial.number]
    assert second["best_run_id"] == best.info.run_id
    assert best.data.metrics["best_val_auroc"] == pytest.approx(second["best_value"])

    # Run again at the same total: nothing left to do, nothing re-run.
    third = run_sweep(cfg, overrides, echo=False)
    assert len(study_of(overrides).trials) == 5 and third["best_value"] == second["best_value"]


def test_a_failing_trial_is_fail_and_the_sweep_goes_on(sweep):
    cfg, overrides = sweep("sweep.n_trials=2", "optimizer=sgd", "sweep.pruner=none")
    study_of(overrides).enqueue_trial({"optimizer.lr": 1e30})  # a loss that overflows at once
    summary = run_sweep(cfg, overrides, echo=False)
    assert summary["n_fail"] == 1 and summary["n_complete"] == 1
    trials = study_of(overrides).trials
    assert trials[0].state == TrialState.FAIL and trials[1].state == TrialState.COMPLETE
    failed = next(r for r in trial_runs(cfg, summary["study_name"])
                  if r.data.tags["optuna_trial"] == "0")
    assert failed.info.status == "FAILED" and "loss became" in failed.data.tags["error"]


# Validation AUROC per epoch, by construction: the first trial learns, the others stay behind.
SCRIPT = {0: [0.70, 0.80, 0.90], 1: [0.55, 0.56, 0.57], 2: [0.52, 0.53, 0.54]}


def scripted_val_auroc(monkeypatch) -> None:
    """Every validation epoch of the n-th trial to train reports SCRIPT[n][epoch] as val_auroc
    (the rest of the training is real): the pruner's decisions are known on any machine."""
    real = ChestXrayModule.on_validation_epoch_end
    modules: list[int] = []

    def on_validation_epoch_end(module) -> None:
        if id(module) not in modules:
            modules.append(id(module))
        values = SCRIPT[modules.index(id(module))]
        compute = module.val_metrics.compute
        module.val_metrics.compute = lambda: {**compute(),
                                              "val_auroc": values[module.current_epoch]}
        try:
            real(module)
        finally:
            del module.val_metrics.compute

    monkeypatch.setattr(ChestXrayModule, "on_validation_epoch_end", on_validation_epoch_end)


def test_hopeless_trials_are_pruned(sweep, monkeypatch):
    cfg, overrides = sweep(
        "sweep.n_trials=3", "trainer.max_epochs=3", "sweep.pruner_startup_trials=1",
        "sweep.pruner_warmup_epochs=0", "trainer.early_stopping_patience=null",
    )
    scripted_val_auroc(monkeypatch)
    summary = run_sweep(cfg, overrides, echo=False)
    # Trial 0 completes; trials 1 and 2 fall below its first epoch and are pruned at once.
    assert (summary["n_complete"], summary["n_pruned"], summary["n_fail"]) == (1, 2, 0)
    trials = {t.number: t for t in study_of(overrides).trials}
    assert trials[0].state == TrialState.COMPLETE
    assert list(trials[0].intermediate_values.values()) == pytest.approx(SCRIPT[0])
    for number in (1, 2):
        assert trials[number].state == TrialState.PRUNED
        assert trials[number].intermediate_values == pytest.approx({0: SCRIPT[number][0]})
        assert trials[number].user_attrs["epochs"] == 1
    runs = {int(r.data.tags["optuna_trial"]): r for r in trial_runs(cfg, summary["study_name"])}
    client = MlflowClient(tracking_uri(cfg))
    for number, trial in trials.items():  # every epoch Optuna saw is in the run's history
        run = runs[number]
        assert run.data.tags["state"] == trial.state.name
        assert run.info.status == "FINISHED"  # pruned as designed: not a failure in the UI
        history = client.get_metric_history(run.info.run_id, "val_auroc")
        epochs = [m for m in history if m.step < len(SCRIPT[number])]
        assert [m.value for m in epochs] == pytest.approx(list(trial.intermediate_values.values()))
    # The complete trial's best epoch was chosen on the scripted values: the last one.
    assert runs[0].data.metrics["best_epoch"] == 2


@pytest.mark.slow
def test_ctrl_c_ends_the_trial_cleanly_and_a_resume_finishes(tiny_overrides):
    overrides = tiny_overrides(*TINY_SWEEP, "sweep.n_trials=2", "trainer.max_epochs=8",
                               "trainer.early_stopping_patience=null", "sweep.pruner=none")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.sweep", *overrides], cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    cfg = compose(overrides)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until trial 0 has logged an epoch
        children = trial_runs(cfg, "synthetic-resnet18") if (
            os.path.exists(cfg.state_dir + "/mlflow.db")) else []
        client = MlflowClient(tracking_uri(cfg))
        if children and client.get_metric_history(children[0].info.run_id, "val_auroc"):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    trial = study_of(overrides).trials[0]
    assert trial.state == TrialState.FAIL
    run = trial_runs(cfg, "synthetic-resnet18")[0]
    assert run.info.status == "KILLED"
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"

    # The same command resumes it (other trial settings would be a study of their own).
    summary = run_sweep(cfg, overrides, echo=False)
    assert summary["n_complete"] == 2 and summary["n_fail"] == 1
    assert len(trial_runs(cfg, "synthetic-resnet18")) == 3


def test_sweep_command_prints_progress_and_a_json_last_line(tiny_overrides):
    overrides = tiny_overrides(*TINY_SWEEP, "sweep.n_trials=1", "trainer.max_epochs=1")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.sweep", *overrides], capture_output=True, text=True,
        cwd=PROJECT_ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert set(summary) == {"study_name", "storage", "parent_run_id", "n_complete", "n_pruned",
                            "n_fail", "best_value", "best_params", "best_run_id", "stop_reason"}
    assert summary["storage"].startswith("sqlite:///") and summary["n_complete"] == 1
    assert any(line.startswith("trial 0 (1 of 1)") for line in lines)
    # The MLflow UI as a user meets it: MLflow 3 opens an experiment of no kind on its GenAI
    # overview, where runs do not show; the printed page is the runs table, and the Source
    # column names the entry point that wrote each run.
    client = MlflowClient(tracking_uri(compose(overrides)))
    experiment = client.get_experiment_by_name("chest-xray")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    page = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
    assert f"make ui   (then {page}?workflowType=machine_learning" in proc.stdout
    for run_id in (summary["parent_run_id"], summary["best_run_id"]):
        tags = client.get_run(run_id).data.tags
        assert tags["mlflow.source.name"] == "pipeline.sweep", tags
        assert tags["mlflow.source.git.commit"] == tags["git_commit"].removesuffix("-dirty")


def test_a_bad_sweep_setting_is_one_line(tiny_overrides):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.sweep", *tiny_overrides("sweep.pruner=sometimes")],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert "sweep.pruner=sometimes" in proc.stderr and "median" in proc.stderr




@pytest.mark.slow
def test_evaluate_test_is_refused_in_a_sweep_with_one_line(tiny_overrides, state_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.sweep", *tiny_overrides("evaluate_test=true")],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: evaluate_test=true is refused in a sweep: the test split chooses "
                     "nothing, and python -m pipeline.select_best tests the chosen models once, "
                     "after selection (drop evaluate_test=true)"]
    assert not any(state_dir.iterdir())  # refused before any store was made
