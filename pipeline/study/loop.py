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
from collections.abc import Sequence

import lightning.pytorch as pl
import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from pipeline import tracking
from pipeline.common.urls import public_url
from pipeline.config import compose
from pipeline.data import load_data
from pipeline.models.weights import describe_weights
from pipeline.study.baselines import enqueue_baselines, search_gain
from pipeline.study.bookkeeping import (
    close_orphaned_parents,
    close_orphaned_runs,
    finish_parent,
    live_workers,
    log_best,
    log_objective,
    start_parent_run,
)
from pipeline.study.budget import STATE_NAMES, fail_stale_trials, progress
from pipeline.study.joint import prepare_space
from pipeline.study.objective import Objective, TrialFailed
from pipeline.study.samplers import make_pruner, make_sampler
from pipeline.study.space import load_space
from pipeline.study.stopping import FailureStreak, search_stopped, tell_workers
from pipeline.study.storage import open_study, setup_lock, storage_url, study_name
from pipeline.study.summary import best_trial, print_table, summarize
from pipeline.training.signals import Interrupted


def run_study(cfg: DictConfig, overrides: Sequence[str] = (), echo: bool = True,
              callbacks: Sequence[pl.Callback] = ()) -> dict:
    """Run (or resume, or join) the study until it holds ``sweep.n_trials`` finished trials, or
    until ``sweep.max_consecutive_failures`` trials in a row fail with one error.

    ``overrides`` are the command line's, replayed under each trial's sampled values;
    ``callbacks`` join every trial's trainer (before the pruning callback).
    Returns the summary that ``pipeline.sweep`` prints as its last line.
    """
    say = print if echo else (lambda *a, **k: None)
    space = load_space(str(cfg.sweep.space), cfg)
    # What a trial runs before its sampled values: the base config, the space's fixed keys,
    # then the command line. Every study-level setting (the pruner's budget) is read from it.
    trial_cfg = compose([*space.fixed_overrides(), *overrides])
    make_sampler(trial_cfg), make_pruner(trial_cfg)  # a bad sweep.* setting stops before any work
    space = prepare_space(space, cfg, trial_cfg, say)
    joint = bool(space.backbones)
    with setup_lock(cfg):
        bundle = load_data(cfg)  # once: fails early on bad data, and every trial reuses it
        mlflow_client = tracking.client(cfg)
        tracking.experiment_id(cfg, mlflow_client)
        name = study_name(cfg, joint)
        if close_orphaned_parents(cfg, name, mlflow_client):
            say("closed the study run of a worker of this machine that died (now KILLED)")
        worker = live_workers(cfg, name, mlflow_client)
        study = open_study(trial_cfg, worker, joint)
        enqueue_baselines(study, cfg, space, trial_cfg,
                          describe_weights(trial_cfg.backbone) == "random", say)
        parent = start_parent_run(cfg, space, bundle.fingerprint, mlflow_client, name,
                                  overrides)

    def close_orphans() -> None:
        closed = close_orphaned_runs(cfg, study, mlflow_client)
        if closed:
            say(f"closed {closed} trial run(s) left RUNNING by a stopped worker (now KILLED)",
                flush=True)

    fail_stale_trials(study)  # a killed worker's trial, past its grace period: FAIL, retried
    close_orphans()
    n_total = int(cfg.sweep.n_trials)
    done_before, running = progress(study)
    elsewhere = f", {len(running)} running in other workers" if running else ""
    say(f"study {name}: {done_before} of {n_total} trials finished{elsewhere}; storage "
        f"{public_url(storage_url(cfg))}; MLflow parent run {parent}")

    objective = Objective(cfg, study, space, overrides, parent, say, callbacks)
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
        log_objective(mlflow_client, trial)
        log_best(mlflow_client, parent, study, trial.number)
        failures.add(trial)

    # One trial at a time, each asked only while finished + running trials (of every worker)
    # stay below sweep.n_trials. A worker with nothing left to start waits for the others'
    # trials: they finish the study, or one goes stale (its worker died) and is retried here.
    timeout = cfg.sweep.timeout
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    poll = max(1.0, min(float(cfg.sweep.heartbeat_interval), 5.0))
    waited_for: list[int] = []
    status, stop_reason = "FINISHED", None
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        while deadline is None or time.monotonic() < deadline:
            stop_reason = search_stopped(cfg, study)
            if stop_reason:
                tell_workers(study, stop_reason)
                say(f"stopping: {stop_reason}", flush=True)
                break
            if fail_stale_trials(study):
                close_orphans()
            finished, running = progress(study)
            if finished >= n_total:
                break
            if finished + len(running) >= n_total:
                if running != waited_for:
                    waited_for = running
                    say(f"waiting for trial(s) {', '.join(map(str, running))} of other "
                        "workers to finish the study (a trial whose worker died is retried "
                        f"here {cfg.sweep.grace_period}s after its last heartbeat)", flush=True)
                time.sleep(poll)
                continue
            waited_for = []
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=[after_trial],
                           gc_after_trial=True)
            if failures.stopped:
                status, stop_reason = "FAILED", failures.reason()
                say(f"stopping: {stop_reason}", flush=True)
                break
    except (KeyboardInterrupt, Interrupted) as exc:
        status = "KILLED"
        if isinstance(exc, Interrupted):  # Ctrl-C between trials
            raise KeyboardInterrupt(str(exc)) from exc
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        finish_parent(mlflow_client, parent, study, status, stop_reason)
    summary = summarize(study, storage_url(cfg), parent)
    summary["stop_reason"] = stop_reason
    gain = search_gain(study)
    if gain is not None:
        sign = 1 if study.direction.name == "MAXIMIZE" else -1
        say(f"search gain over the papers' recipes: {sign * (gain[0] - gain[1]):+.3f} "
            f"{cfg.objective.metric} (best searched {gain[0]:.4f}, best recipe {gain[1]:.4f})")
        mlflow_client.log_metric(parent, "search_gain", sign * (gain[0] - gain[1]))
    if echo:
        print_table(study, str(cfg.objective.metric))
        say(f"open the MLflow UI: make ui   (then "
            f"{tracking.runs_page(tracking.experiment_id(cfg, mlflow_client))}, parent run "
            f"'{name}')")
    if status == "FAILED" or not summary["n_complete"] + summary["n_pruned"]:
        raise SweepFailed(stop_reason or "no trial completed or was pruned", summary)
    return summary


class SweepFailed(Exception):
    """The study ended without a result to stand on; ``summary`` is what it holds."""

    def __init__(self, reason: str, summary: dict):
        super().__init__(reason)
        self.summary = summary
