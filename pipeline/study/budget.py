"""The trial budget, counted from the storage: finished trials of every worker, the ones running
now, and the trials of dead workers failed by Optuna's heartbeat check and retried."""

from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState

from pipeline.tracking.schema import State

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# A trial's state as its run's state tag says it (and Optuna's own name for a trial not ended).
STATE_NAMES = {TrialState.COMPLETE: State.COMPLETE, TrialState.PRUNED: State.PRUNED,
               TrialState.FAIL: State.FAIL, TrialState.RUNNING: "RUNNING",
               TrialState.WAITING: "WAITING"}


def progress(study: optuna.Study) -> tuple[int, list[int]]:
    """(finished trials toward sweep.n_trials, numbers of the trials RUNNING now). A FAIL that was
    retried counts once, via its retry; one ended by Ctrl-C does not count (the resume runs a trial
    in its place)."""
    trials = study.get_trials(deepcopy=False)
    # Set by the retry callback on each retry: every stale trial it replaced, retries included.
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    finished = sum(
        1 for t in trials
        if t.state in FINISHED_STATES and not (t.state == TrialState.FAIL and (
            t.number in retried or t.user_attrs.get("interrupted")))
    )
    return finished, [t.number for t in trials if t.state == TrialState.RUNNING]


def fail_stale_trials(study: optuna.Study) -> bool:
    """Optuna's heartbeat check: RUNNING trials of dead workers become FAIL and are queued for a
    retry. True when it failed any (their MLflow runs are then left to close)."""
    before = set(progress(study)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return bool(before - set(progress(study)[1]))
