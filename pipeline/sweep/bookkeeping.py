"""The study in MLflow: one parent run per invocation, its best so far, each trial's objective,
Optuna's plots, and trial runs a killed worker left RUNNING closed."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from pipeline import tracking
from pipeline.sweep.budget import STATE_NAMES
from pipeline.sweep.space import SearchSpace
from pipeline.sweep.summary import best_trial, state_counts


def close_orphaned_runs(cfg: DictConfig, study: optuna.Study, mlflow_client: Any) -> int:
    """Trial runs left RUNNING by a killed worker whose Optuna trial has ended: mark KILLED."""
    exp = tracking.experiment_id(cfg, mlflow_client)
    name = study.study_name.replace("'", "\\'")
    runs = mlflow_client.search_runs(
        [exp],
        filter_string=f"tags.study_name = '{name}' AND tags.role = 'trial' "
        "AND attributes.status = 'RUNNING'",
        max_results=1000,
    )
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    closed = 0
    for run in runs:
        number = int(run.data.tags.get("optuna_trial", -1))
        if states.get(number, TrialState.FAIL) != TrialState.RUNNING:
            mlflow_client.set_tag(run.info.run_id, "state", STATE_NAMES[states.get(
                number, TrialState.FAIL)])
            mlflow_client.set_tag(run.info.run_id, "error", "worker died during this trial")
            mlflow_client.set_terminated(run.info.run_id, status="KILLED")
            closed += 1
    return closed


def start_parent_run(cfg: DictConfig, space: SearchSpace, fingerprint: str, mlflow_client: Any,
                     name: str) -> str:
    tags = {
        "role": "study", "study_name": name, "backbone": str(cfg.backbone.name),
        "dataset": str(cfg.dataset.name), "sweep_space": space.name,
        "data_fingerprint": fingerprint, "git_commit": tracking.git_commit(),
        "host": socket.gethostname(), "pid": str(os.getpid()),
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


def finish_parent(mlflow_client: Any, parent: str, study: optuna.Study, status: str) -> None:
    try:
        counts = state_counts(study)
        for key, value in counts.items():
            mlflow_client.log_metric(parent, f"n_{key.lower()}", value)
        log_best(mlflow_client, parent, study, len(study.trials))
        log_plots(mlflow_client, parent, study)
    finally:
        mlflow_client.set_terminated(parent, status=status)
