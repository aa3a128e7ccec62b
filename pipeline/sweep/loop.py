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
from pipeline.data import load_data
from pipeline.sweep.bookkeeping import (
    close_orphaned_runs,
    finish_parent,
    log_best,
    log_objective,
    start_parent_run,
)
from pipeline.sweep.budget import STATE_NAMES, fail_stale_trials, progress
from pipeline.sweep.objective import Objective, TrialFailed
from pipeline.sweep.space import load_space
from pipeline.sweep.storage import open_study, public_url, setup_lock, storage_url
from pipeline.sweep.summary import best_trial, print_table, summarize
from pipeline.training.signals import Interrupted


def run_study(cfg: DictConfig, overrides: Sequence[str] = (), echo: bool = True,
              callbacks: Sequence[pl.Callback] = ()) -> dict:
    """Run (or resume, or join) the study until it holds ``sweep.n_trials`` finished trials.

    ``overrides`` are the command line's, replayed under each trial's sampled values;
    ``callbacks`` join every trial's trainer (before the pruning callback).
    Returns the summary that ``pipeline.sweep`` prints as its last line.
    """
    say = print if echo else (lambda *a, **k: None)
    space = load_space(str(cfg.sweep.space), cfg)
    with setup_lock(cfg):
        bundle = load_data(cfg)  # once: fails early on bad data, and every trial reuses it
        study = open_study(cfg)
        mlflow_client = tracking.client(cfg)
        tracking.experiment_id(cfg, mlflow_client)
    name = study.study_name

    def close_orphans() -> None:
        closed = close_orphaned_runs(cfg, study, mlflow_client)
        if closed:
            say(f"closed {closed} trial run(s) left RUNNING by a stopped worker (now KILLED)",
                flush=True)

    fail_stale_trials(study)  # a killed worker's trial, past its grace period: FAIL, retried
    close_orphans()
    parent = start_parent_run(cfg, space, bundle.fingerprint, mlflow_client, name)
    n_total = int(cfg.sweep.n_trials)
    done_before, running = progress(study)
    elsewhere = f", {len(running)} running in other workers" if running else ""
    say(f"study {name}: {done_before} of {n_total} trials finished{elsewhere}; storage "
        f"{public_url(storage_url(cfg))}; MLflow parent run {parent}")

    objective = Objective(cfg, study, space, overrides, parent, say, callbacks)

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        state = STATE_NAMES.get(trial.state, trial.state.name)
        if trial.state == TrialState.COMPLETE:
            outcome = f"{cfg.objective.metric}={trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            epochs = max(trial.intermediate_values, default=0) + 1
            outcome = f"pruned after {epochs} epoch(s)"
        else:
            outcome = "failed"
        best = best_trial(study)
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no best yet"
        say(f"  trial {trial.number}: {state} {outcome}; {best_text}", flush=True)
        log_objective(mlflow_client, trial)
        log_best(mlflow_client, parent, study, trial.number)

    # One trial at a time, each asked only while finished + running trials (of every worker)
    # stay below sweep.n_trials. A worker with nothing left to start waits for the others'
    # trials: they finish the study, or one goes stale (its worker died) and is retried here.
    timeout = cfg.sweep.timeout
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    poll = max(1.0, min(float(cfg.sweep.heartbeat_interval), 5.0))
    waited_for: list[int] = []
    status = "FINISHED"
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        while deadline is None or time.monotonic() < deadline:
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
    except (KeyboardInterrupt, Interrupted) as exc:
        status = "KILLED"
        if isinstance(exc, Interrupted):  # Ctrl-C between trials
            raise KeyboardInterrupt(str(exc)) from exc
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        finish_parent(mlflow_client, parent, study, status)
    summary = summarize(study, storage_url(cfg), parent)
    if echo:
        print_table(study, str(cfg.objective.metric))
        say(f"open the MLflow UI: make ui   (then http://127.0.0.1:5000, experiment "
            f"'{cfg.tracking.experiment}', parent run '{name}')")
    return summary
