"""The study in MLflow: one parent run per invocation, its best so far, each trial's objective,
Optuna's plots, and trial runs a killed worker left RUNNING closed."""

from __future__ import annotations

import socket
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from pipeline.common.urls import redact
from pipeline.config import one_line
from pipeline.study.budget import STATE_NAMES
from pipeline.study.identity import study_uid
from pipeline.study.space import SearchSpace
from pipeline.study.summary import best_trial, state_counts
from pipeline.tracking.runs import process_alive, store_full, terminate
from pipeline.tracking.schema import BEST_PARAM, RUNNING, Role, Status, Tag
from pipeline.tracking.search import where
from pipeline.tracking.store import Store

DIED = "worker died during this trial"


def close_orphaned_runs(store: Store, study: optuna.Study) -> int:
    """Trial runs left RUNNING by a killed worker whose Optuna trial has ended: mark KILLED,
    and their parent (the dead invocation's study run) with them. Pages through every run.

    Only runs that are provably this storage's study's (their ``study_uid`` tag; a run from
    before that tag: one of this machine whose process is gone) and whose process is not alive
    on this machine: a study of the same name in another storage (a shared MLflow server, a
    worker that forgot ``sweep.storage``) keeps its live runs."""
    # All pages first: closing a run takes it out of the RUNNING pages still to be read.
    runs = list(store.all(where(RUNNING, role=Role.TRIAL, study_name=study.study_name)))
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    uid = study_uid(study)
    closed = 0
    for run in runs:
        if not _ours_and_dead(run.data.tags, uid):
            continue
        number = int(run.data.tags.get(Tag.OPTUNA_TRIAL, -1))
        state = states.get(number, TrialState.FAIL)
        if state != TrialState.RUNNING:
            terminate(store, run.info.run_id, Status.KILLED,
                      {Tag.STATE: STATE_NAMES[state], Tag.ERROR: DIED})
            closed += 1
            parent = run.data.tags.get(Tag.PARENT)
            if parent:
                _close_parent(store, parent)
    return closed


def _ours_and_dead(tags: dict[str, str], uid: str) -> bool:
    """Whether a run is this study's in this storage and its process is not alive here (on
    another machine, the trial's state in the storage says whether its worker died)."""
    here = tags.get(Tag.HOST) == socket.gethostname()
    if here and process_alive(tags.get(Tag.PID, "")):
        return False
    if Tag.STUDY_UID in tags:
        return bool(uid) and tags[Tag.STUDY_UID] == uid
    return here  # untagged (older) runs: only this machine's dead processes are sure


def close_orphaned_parents(store: Store, name: str) -> int:
    """Study runs left RUNNING by a worker of this machine that is no longer alive (killed
    between trials, or mid-trial before its grace period was over): mark KILLED."""
    closed = 0
    for run in list(store.all(where(RUNNING, role=Role.STUDY, study_name=name))):
        tags = run.data.tags
        if tags.get(Tag.HOST) == socket.gethostname() and not process_alive(
                tags.get(Tag.PID, "")):
            closed += _close_parent(store, run.info.run_id)
    return closed


def live_workers(store: Store, name: str) -> int:
    """Study runs of this study still RUNNING: the other workers on it now."""
    return sum(1 for _ in store.all(where(RUNNING, role=Role.STUDY, study_name=name)))


def _close_parent(store: Store, run_id: str) -> int:
    run = store.get_run(run_id)
    tags = run.data.tags
    if run.info.status != Status.RUNNING or (
            tags.get(Tag.HOST) == socket.gethostname() and process_alive(tags.get(Tag.PID, ""))):
        return 0
    terminate(store, run_id, Status.KILLED, {Tag.ERROR: "the worker of this study run died"})
    return 1


def study_tags(cfg: DictConfig, space: SearchSpace, fingerprint: str, study: optuna.Study,
               overrides: Sequence[str] = ()) -> dict[Tag, str]:
    """What a study run says of its invocation: the study (its name and its id in its storage),
    its space and data, and the command that reproduces it (the command line's overrides)."""
    return {
        Tag.STUDY_NAME: study.study_name, Tag.STUDY_UID: study_uid(study),
        Tag.BACKBONE: str(cfg.backbone.name),
        Tag.DATASET: str(cfg.dataset.name), Tag.SWEEP_SPACE: space.name,
        Tag.DATA_FINGERPRINT: fingerprint,
        Tag.COMMAND: redact(" ".join(["python -m pipeline.sweep", *overrides]))[:5000],
    }


def log_start(store: Store, parent: str, cfg: DictConfig, space: SearchSpace) -> None:
    """The study run's sweep settings as params, and its search space file."""
    store.log(parent, params={f"sweep.{key}": str(cfg.sweep[key]) for key in (
        "n_trials", "metric", "direction", "sampler", "pruner", "space")})
    store.log_artifact(parent, space.path)


def log_best(store: Store, parent_run_id: str, study: optuna.Study, step: int) -> None:
    best = best_trial(study)
    if best is None:
        return
    tags = {Tag.BEST_TRIAL: str(best.number),
            Tag.BEST_RUN_ID: str(best.user_attrs.get("mlflow_run_id", ""))}
    tags.update({f"{BEST_PARAM}{k}": str(v) for k, v in best.params.items()})
    store.log(parent_run_id, metrics={"best_value": float(best.value)}, tags=tags, step=step)


def log_objective(store: Store, trial: FrozenTrial) -> None:
    """The trial's objective on its run: the value, or a pruned trial's last reported one."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    values = trial.intermediate_values
    value = trial.value if trial.value is not None else values[max(values)] if values else None
    if run_id and value is not None:
        store.log(run_id, metrics={"objective": float(value)})


def log_plots(store: Store, parent_run_id: str, study: optuna.Study) -> list[str]:
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
        store.log_artifacts(parent_run_id, tmp, "plots")
    return written


def finish_parent(store: Store, parent: str, study: optuna.Study,
                  stop_reason: str | None = None) -> None:
    """The study run's last figures and plots, before it closes. A store that cannot take them
    (a full disk) costs the figures, not the sweep's exit: the next invocation closes the run."""
    try:
        if stop_reason:
            store.log(parent, tags={Tag.STOP_REASON: stop_reason[:5000]})
        counts = state_counts(study)
        store.log(parent, metrics={f"n_{key.lower()}": value for key, value in counts.items()})
        log_best(store, parent, study, len(study.trials))
        log_plots(store, parent, study)
    except Exception as exc:  # noqa: BLE001 -- re-raised unless the store is out of space
        if not store_full(exc):
            raise
        warnings.warn(f"the study run {parent} could not be finished ({one_line(exc)[:200]}): "
                      "the next invocation closes it", stacklevel=2)
