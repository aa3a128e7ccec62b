"""The trial budget, counted from the storage: finished trials of every worker, the ones running
now, and the trials of dead workers failed by Optuna's heartbeat check and retried."""

from __future__ import annotations

import copy
import warnings
from datetime import datetime, timedelta

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload

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


NO_HEARTBEAT = "its worker died before the trial's first heartbeat"


def fail_stale_trials(study: optuna.Study, grace_period: float) -> bool:
    """Optuna's heartbeat check: RUNNING trials of dead workers become FAIL and are queued for a
    retry; so do trials RUNNING ``grace_period`` seconds since their start without any heartbeat,
    which Optuna's check skips. True when it failed any (their MLflow runs are then left to
    close)."""
    before = set(progress(study)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    storage = study._storage  # Optuna's cache in front of the RDB storage: ask through it
    retry = storage.get_heartbeat_stale_trial_callback() if isinstance(
        _rdb(study), RDBStorage) else None
    for trial_id in never_beating(study, grace_period):
        try:  # as Optuna fails a stale trial: another worker may be failing it too
            storage.set_trial_user_attr(trial_id, "error", NO_HEARTBEAT)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if retry is not None:  # the retry takes its params and user attrs, not its error
            failed = copy.deepcopy(storage.get_trial(trial_id))
            failed.user_attrs.pop("error", None)
            retry(study, failed)
    return bool(before - set(progress(study)[1]))


def _rdb(study: optuna.Study) -> object:
    """The study's RDB storage, behind the cache Optuna puts in front of it."""
    return getattr(study._storage, "_backend", study._storage)


def never_beating(study: optuna.Study, grace_period: float) -> list[int]:
    """Ids of the study's trials RUNNING ``grace_period`` seconds since their start without a
    heartbeat. ``study.ask()`` commits a trial before its worker's heartbeat thread first writes
    (TPE samples in between), so a worker killed there leaves one that Optuna never fails."""
    storage = _rdb(study)
    if not isinstance(storage, RDBStorage) or storage.get_heartbeat_interval() is None:
        return []
    from optuna.storages._rdb import models  # the heartbeat table has no public reader

    limit = datetime.now() - timedelta(seconds=grace_period)  # datetime_start: local, naive
    session = storage.scoped_session()
    try:
        running = (session.query(models.TrialModel)
                   .options(selectinload(models.TrialModel.heartbeats))
                   .filter(models.TrialModel.state == TrialState.RUNNING,
                           models.TrialModel.study_id == study._study_id).all())
        return [t.trial_id for t in running if not t.heartbeats
                and t.datetime_start is not None and t.datetime_start < limit]
    except SQLAlchemyError:  # the database unreachable now: the next look asks again
        return []
    finally:
        session.close()
