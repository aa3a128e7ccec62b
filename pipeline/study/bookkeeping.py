"""The study in MLflow: one parent run per invocation, its best so far, each trial's objective,
Optuna's plots, and trial runs a killed worker left RUNNING closed."""

from __future__ import annotations

import socket
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from pipeline import tracking
from pipeline.config import one_line
from pipeline.runs.training_run import FULL_DISK
from pipeline.study.budget import STATE_NAMES
from pipeline.study.space import SearchSpace
from pipeline.study.summary import best_trial, state_counts
from pipeline.tracking.runs import process_alive, process_tags
from pipeline.tracking.search import all_runs, where

RUNNING = "attributes.status = 'RUNNING'"
DIED = "worker died during this trial"


def close_orphaned_runs(cfg: DictConfig, study: optuna.Study, mlflow_client: Any) -> int:
    """Trial runs left RUNNING by a killed worker whose Optuna trial has ended: mark KILLED,
    and their parent (the dead invocation's study run) with them. Pages through every run."""
    exp = tracking.experiment_id(cfg, mlflow_client)
    # All pages first: closing a run takes it out of the RUNNING pages still to be read.
    runs = list(all_runs(mlflow_client, [exp], where(RUNNING, role="trial",
                                                      study_name=study.study_name)))
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    closed = 0
    for run in runs:
        number = int(run.data.tags.get("optuna_trial", -1))
        if states.get(number, TrialState.FAIL) != TrialState.RUNNING:
            mlflow_client.set_tag(run.info.run_id, "state", STATE_NAMES[states.get(
                number, TrialState.FAIL)])
            mlflow_client.set_tag(run.info.run_id, "error", DIED)
            mlflow_client.set_terminated(run.info.run_id, status="KILLED")
            closed += 1
            parent = run.data.tags.get("mlflow.parentRunId")
            if parent:
                _close_parent(mlflow_client, parent)
    return closed


def close_orphaned_parents(cfg: DictConfig, name: str, mlflow_client: Any) -> int:
    """Study runs left RUNNING by a worker of this machine that is no longer alive (killed
    between trials, or mid-trial before its grace period was over): mark KILLED."""
    exp = tracking.experiment_id(cfg, mlflow_client)
    closed = 0
    for run in list(all_runs(mlflow_client, [exp],
                             where(RUNNING, role="study", study_name=name))):
        tags = run.data.tags
        if tags.get("host") == socket.gethostname() and not process_alive(tags.get("pid", "")):
            closed += _close_parent(mlflow_client, run.info.run_id)
    return closed


def live_workers(cfg: DictConfig, name: str, mlflow_client: Any) -> int:
    """Study runs of this study still RUNNING: the other workers on it now."""
    exp = tracking.experiment_id(cfg, mlflow_client)
    return sum(1 for _ in all_runs(mlflow_client, [exp],
                                   where(RUNNING, role="study", study_name=name)))


def _close_parent(mlflow_client: Any, run_id: str) -> int:
    run = mlflow_client.get_run(run_id)
    if run.info.status != "RUNNING":
        return 0
    mlflow_client.set_tag(run_id, "error", "the worker of this study run died")
    mlflow_client.set_terminated(run_id, status="KILLED")
    return 1


def start_parent_run(cfg: DictConfig, space: SearchSpace, fingerprint: str, mlflow_client: Any,
                     name: str, overrides: Sequence[str] = ()) -> str:
    tags = {
        "role": "study", "study_name": name, "backbone": str(cfg.backbone.name),
        "dataset": str(cfg.dataset.name), "sweep_space": space.name,
        "data_fingerprint": fingerprint, "git_commit": tracking.git_commit(),
        **process_tags(),
        # The command that reproduces this invocation (its overrides are the command line's).
        "command": " ".join(["python -m pipeline.sweep", *overrides])[:5000],
    }
    run = mlflow_client.create_run(tracking.experiment_id(cfg, mlflow_client), run_name=name,
                                   tags=tags)
    run_id = run.info.run_id
    for key in ("n_trials", "metric", "direction", "sampler", "pruner", "space"):
        mlflow_client.log_param(run_id, f"sweep.{key}", str(cfg.sweep[key]))
    mlflow_client.log_artifact(run_id, str(space.path))
    return run_id


def log_best(mlflow_client: Any, parent_run_id: str, study: optuna.Study, step: int) -> None:
    best = best_trial(study)
    if best is None:
        return
    from mlflow.entities import Metric, RunTag

    tags = [RunTag("best_trial", str(best.number)),
            RunTag("best_run_id", str(best.user_attrs.get("mlflow_run_id", "")))]
    tags += [RunTag(f"best.{k}", str(v)) for k, v in best.params.items()]
    mlflow_client.log_batch(
        parent_run_id,
        metrics=[Metric("best_value", float(best.value), int(time.time() * 1000), step)],
        tags=tags,
    )


def log_objective(mlflow_client: Any, trial: FrozenTrial) -> None:
    """The trial's objective on its run: the value, or a pruned trial's last reported one."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    values = trial.intermediate_values
    value = trial.value if trial.value is not None else values[max(values)] if values else None
    if run_id and value is not None:
        mlflow_client.log_metric(run_id, "objective", float(value))


def log_plots(mlflow_client: Any, parent_run_id: str, study: optuna.Study) -> list[str]:
    """Optuna's optimisation history, parameter importance and parallel coordinates as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {
        "optimization_history": ovm.plot_optimization_history,
        "param_importances": ovm.plot_param_importances,
        "parallel_coordinate": ovm.plot_parallel_coordinate,
    }
    written = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, plot in plots.items():
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances need two complete trials with different values
            axes = ax.flatten() if hasattr(ax, "flatten") else [ax]
            fig = axes[0].figure
            fig.set_size_inches(9, 6)
            fig.tight_layout()
            path = Path(tmp) / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path.name)
        mlflow_client.log_artifacts(parent_run_id, tmp, artifact_path="plots")
    return written


def finish_parent(mlflow_client: Any, parent: str, study: optuna.Study, status: str,
                  stop_reason: str | None = None) -> None:
    """The study run's last figures and plots, then its status. A store that cannot take them
    (a full disk) costs the figures, not the sweep's exit: the next invocation closes the run."""
    try:
        _finish(mlflow_client, parent, study, status, stop_reason)
    except Exception as exc:  # noqa: BLE001 -- re-raised unless the store is out of space
        if not any(m in str(exc) for m in FULL_DISK):
            raise
        warnings.warn(f"the study run {parent} could not be finished ({one_line(exc)[:200]}): "
                      "the next invocation closes it", stacklevel=2)


def _finish(mlflow_client: Any, parent: str, study: optuna.Study, status: str,
            stop_reason: str | None) -> None:
    try:
        if stop_reason:
            mlflow_client.set_tag(parent, "stop_reason", stop_reason[:5000])
        counts = state_counts(study)
        for key, value in counts.items():
            mlflow_client.log_metric(parent, f"n_{key.lower()}", value)
        log_best(mlflow_client, parent, study, len(study.trials))
        log_plots(mlflow_client, parent, study)
    finally:
        mlflow_client.set_terminated(parent, status=status)
