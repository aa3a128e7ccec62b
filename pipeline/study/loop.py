"""The study loop: an Optuna study over one backbone, run (or resumed, or joined) until it holds
``sweep.n_trials`` finished trials, each an ordinary composed config trained as a nested MLflow
run under one parent run per invocation.

Nothing here assumes one process: the study lives in its storage, the trial budget is counted
from it (other workers' running trials included), and trials orphaned by a killed worker are
failed by Optuna's heartbeat and retried. The loop itself is ours: Optuna's ``n_trials`` counts
one process's trials only, not a shared budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import lightning.pytorch as pl
import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline.common.urls import public_url
from pipeline.models.weights import describe_weights
from pipeline.runs.context import Context
from pipeline.study.baselines import best_searched_and_recipe, enqueue_baselines
from pipeline.study.bookkeeping import (
    close_orphaned_parents,
    close_orphaned_runs,
    finish_parent,
    live_workers,
    log_best,
    log_objective,
    log_start,
    study_tags,
)
from pipeline.study.budget import STATE_NAMES, fail_stale_trials, progress
from pipeline.study.objective import Objective, TrialFailed
from pipeline.study.plan import StudyPlan
from pipeline.study.stopping import FailureStreak, search_stopped, tell_workers
from pipeline.study.storage import open_study, setup_lock, storage_url
from pipeline.study.summary import best_trial, print_table, summarize
from pipeline.tracking.runs import OpenRun
from pipeline.tracking.schema import Role, State
from pipeline.tracking.store import runs_page
from pipeline.training.signals import Interrupted


def run_study(ctx: Context, plan: StudyPlan, echo: bool = True,
              callbacks: Sequence[pl.Callback] = ()) -> dict:
    """Run (or resume, or join) the study of ``plan`` until it holds ``sweep.n_trials`` finished
    trials, or until ``sweep.max_consecutive_failures`` trials in a row fail with one error; every
    trial trains on the context's data and is recorded in its store.

    ``callbacks`` join every trial's trainer (before the pruning callback).
    Returns the summary that ``pipeline.sweep`` prints as its last line.
    """
    say = print if echo else (lambda *a, **k: None)
    cfg, store = plan.cfg, ctx.store
    with ExitStack() as stack:
        with setup_lock(cfg):  # workers started together count each other's study runs
            fingerprint = ctx.data(plan.trial_cfg).fingerprint
            identity = plan.identity(fingerprint)
            name = plan.name(identity)
            if close_orphaned_parents(store, name):
                say("closed the study run of a worker of this machine that died (now KILLED)")
            study = open_study(plan.trial_cfg, identity, live_workers(store, name), plan.joint)
            enqueue_baselines(study, cfg, plan.space, plan.trial_cfg,
                              describe_weights(plan.trial_cfg.backbone) == "random", say)
            parent = stack.enter_context(store.open_run(Role.STUDY, name=name, **study_tags(
                cfg, plan.space, fingerprint, study, plan.overrides)))
            log_start(store, parent.id, cfg, plan.space)
        summary = _run(ctx, plan, study, parent, say, callbacks)
    if echo:
        print_table(study, str(cfg.objective.metric))
        say(f"open the MLflow UI: make ui   (then {runs_page(store.experiment_id)}, parent run "
            f"'{name}')")
    if parent.state == State.FAIL or not summary["n_complete"] + summary["n_pruned"]:
        raise SweepFailed(summary["stop_reason"] or "no trial completed or was pruned", summary)
    return summary


def _run(ctx: Context, plan: StudyPlan, study: optuna.Study, parent: OpenRun,
         say: Callable[..., None], callbacks: Sequence[pl.Callback]) -> dict:
    """The trials, one at a time, under the open study run ``parent``; the summary."""
    cfg, store = plan.cfg, ctx.store

    def close_orphans() -> None:
        closed = close_orphaned_runs(store, study)
        if closed:
            say(f"closed {closed} trial run(s) left RUNNING by a stopped worker (now KILLED)",
                flush=True)

    grace = float(cfg.sweep.grace_period)
    fail_stale_trials(study, grace)  # a killed worker's trial, past its grace period: FAIL, retried
    close_orphans()
    n_total = int(cfg.sweep.n_trials)
    done_before, running = progress(study)
    elsewhere = f", {len(running)} running in other workers" if running else ""
    say(f"study {study.study_name}: {done_before} of {n_total} trials finished{elsewhere}; storage "
        f"{public_url(storage_url(cfg))}; MLflow parent run {parent.id}")

    objective = Objective(ctx, plan, study, parent.id, say, callbacks)
    failures = FailureStreak(int(cfg.sweep.max_consecutive_failures))

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        state = STATE_NAMES.get(trial.state, trial.state.name)
        if trial.state == TrialState.COMPLETE:
            outcome = f"{cfg.objective.metric}={trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            epochs = trial.user_attrs.get("epochs", len(trial.intermediate_values))
            outcome = f"pruned after {epochs} epoch(s)"
        else:
            outcome = f"failed: {trial.user_attrs.get('error', '?')}"
        best = best_trial(study)
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no best yet"
        say(f"  trial {trial.number}: {state} {outcome}; {best_text}", flush=True)
        log_objective(store, trial)
        log_best(store, parent.id, study, trial.number)
        failures.add(trial)

    # One trial at a time, each asked only while finished + running trials (of every worker)
    # stay below sweep.n_trials. A worker with nothing left to start waits for the others'
    # trials: they finish the study, or one goes stale (its worker died) and is retried here.
    timeout = cfg.sweep.timeout
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    poll = max(1.0, min(float(cfg.sweep.heartbeat_interval), 5.0))
    waited_for: list[int] = []
    stop_reason = None
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        while deadline is None or time.monotonic() < deadline:
            stop_reason = search_stopped(cfg, study)
            if stop_reason:
                tell_workers(cfg, study, stop_reason)
                say(f"stopping: {stop_reason}", flush=True)
                break
            if fail_stale_trials(study, grace):
                close_orphans()
            finished, running = progress(study)
            if finished >= n_total:
                break
            if finished + len(running) >= n_total:
                if running != waited_for:
                    waited_for = running
                    say(f"waiting for trial(s) {', '.join(map(str, running))} of other "
                        "workers to finish the study (a trial whose worker died is retried "
                        f"here {cfg.sweep.grace_period}s after its last heartbeat, or after its "
                        "start if it sent none)", flush=True)
                time.sleep(poll)
                continue
            waited_for = []
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=[after_trial],
                           gc_after_trial=True)
            if failures.stopped:
                stop_reason = failures.reason()
                parent.end(State.FAIL)
                say(f"stopping: {stop_reason}", flush=True)
                break
    except Interrupted as exc:  # Ctrl-C between trials
        raise KeyboardInterrupt(str(exc)) from exc
    finally:
        finish_parent(store, parent.id, study, stop_reason)
    summary = summarize(study, storage_url(cfg), parent.id)
    summary["stop_reason"] = stop_reason
    gain = best_searched_and_recipe(study)
    if gain is not None:
        sign = 1 if study.direction.name == "MAXIMIZE" else -1
        say(f"search gain over the papers' recipes on validation (optimistic: the same "
            f"validation scores chose the searched trial; select_best tests both): "
            f"{sign * (gain[0] - gain[1]):+.3f} {cfg.objective.metric} (best searched "
            f"{gain[0]:.4f}, best recipe {gain[1]:.4f})")
        store.log(parent.id, metrics={"search_gain": sign * (gain[0] - gain[1])})
    return summary


class SweepFailed(Exception):
    """The study ended without a result to stand on; ``summary`` is what it holds."""

    def __init__(self, reason: str, summary: dict):
        super().__init__(reason)
        self.summary = summary
