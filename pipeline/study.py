"""An Optuna study over one backbone: every trial an ordinary composed config, trained by
``run_training`` as a nested MLflow run under one parent run per invocation.

Nothing here assumes one process: the study lives in its storage (SQLite by default, any Optuna
RDB URL such as PostgreSQL for several machines), the trial budget is counted from the storage
(other workers' running trials included), and trials orphaned by a killed worker are failed by
Optuna's heartbeat and retried.
"""

from __future__ import annotations

import math
import os
import random
import socket
import tempfile
import time
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from omegaconf import DictConfig
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from pipeline import tracking
from pipeline.config import compose, state_dir
from pipeline.data import load_data
from pipeline.data.atomic import file_lock
from pipeline.errors import ConfigError
from pipeline.search_space import SearchSpace, load_space, overrides_of
from pipeline.training import Interrupted, run_training

# Fresh stores created by several workers at once: a lost race on a table or a version row.
_CREATE_RACE = ("already exists", "duplicate key", "unique constraint", "database is locked")

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STATE_NAMES = {TrialState.COMPLETE: "COMPLETE", TrialState.PRUNED: "PRUNED",
               TrialState.FAIL: "FAIL", TrialState.RUNNING: "RUNNING",
               TrialState.WAITING: "WAITING"}


class TrialFailed(Exception):
    """A training that ended FAIL: Optuna records the trial as FAIL and the sweep goes on."""


# ---- storage, sampler, pruner --------------------------------------------------------------
def storage_url(cfg: DictConfig) -> str:
    return str(cfg.sweep.storage or f"sqlite:///{state_dir(cfg) / 'optuna.db'}")


def public_url(url: str) -> str:
    """The storage URL without its password (it is printed and logged)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- not a SQLAlchemy URL: print it as given
        return url


def make_storage(cfg: DictConfig) -> RDBStorage:
    """The RDB storage with heartbeats, so a killed worker's trial is failed and retried."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = storage_url(cfg)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers share the file: wait for a lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        engine_kwargs["pool_pre_ping"] = True
    for attempt in range(4):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=int(cfg.sweep.heartbeat_interval),
                grace_period=int(cfg.sweep.grace_period),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=int(cfg.sweep.max_retry)
                ),
            )
        except Exception as exc:  # noqa: BLE001 -- driver, URL or connection problems alike
            if attempt < 3 and any(m in str(exc).lower() for m in _CREATE_RACE):
                # Another worker (maybe on another machine) is creating the same fresh tables:
                # once it is done they exist, and opening them again succeeds.
                time.sleep(0.5 + random.random())
                continue
            raise ConfigError(
                f"sweep.storage={public_url(url)} cannot be opened ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); give an Optuna RDB URL such "
                "as sqlite:///path/optuna.db or postgresql://user:pass@host/db"
            ) from exc
    raise AssertionError("unreachable")


def make_sampler(cfg: DictConfig, trial_number: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler seeded from ``seed``, and from the trial number when given: every trial then
    draws its own values, reproducibly, whichever worker runs it (workers seeded alike would
    all draw the same ones)."""
    name, seed = str(cfg.sweep.sampler), int(cfg.seed)
    if trial_number is not None:
        seed = int(np.random.SeedSequence([seed, trial_number]).generate_state(1)[0])
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(
            cfg.sweep.get("startup_trials", 5)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"sweep.sampler={name}: use tpe or random")


def make_pruner(cfg: DictConfig) -> optuna.pruners.BasePruner:
    name = str(cfg.sweep.pruner)
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(cfg.sweep.pruner_startup_trials),
            n_warmup_steps=int(cfg.sweep.pruner_warmup_epochs),
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, int(cfg.sweep.pruner_warmup_epochs)),
            max_resource=int(cfg.trainer.max_epochs),
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"sweep.pruner={name}: use median, hyperband or none")


def study_name(cfg: DictConfig) -> str:
    return str(cfg.sweep.study_name or f"{cfg.dataset.name}-{cfg.backbone.name}")


def open_study(cfg: DictConfig) -> optuna.Study:
    direction = str(cfg.sweep.direction)
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"sweep.direction={direction}: use maximize or minimize")
    study = optuna.create_study(
        storage=make_storage(cfg), study_name=study_name(cfg), direction=direction,
        sampler=make_sampler(cfg), pruner=make_pruner(cfg), load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study '{study.study_name}' was created to {study.direction.name.lower()}; "
            f"sweep.direction={direction} cannot change it: use another sweep.study_name"
        )
    return study


def finished_count(study: optuna.Study) -> int:
    """Finished trials toward sweep.n_trials. A FAIL that was retried counts once, via its retry;
    one ended by Ctrl-C does not count (the resume runs a trial in its place)."""
    return progress(study)[0]


def progress(study: optuna.Study) -> tuple[int, list[int]]:
    """(finished trials as ``finished_count`` counts them, numbers of the trials RUNNING now)."""
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


def setup_lock(cfg: DictConfig) -> AbstractContextManager[None]:
    """Workers started together on one machine set up one at a time: creating the tables of a
    fresh SQLite store is not safe to race (in Optuna or MLflow), and the first worker's decode
    cache serves the others instead of each decoding the same images."""
    return file_lock(state_dir(cfg) / ".setup.lock")


# ---- MLflow bookkeeping --------------------------------------------------------------------
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


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


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


# ---- the sweep -----------------------------------------------------------------------------
def run_study(cfg: DictConfig, overrides: Sequence[str] = (), echo: bool = True) -> dict:
    """Run (or resume, or join) the study until it holds ``sweep.n_trials`` finished trials.

    ``overrides`` are the command line's, replayed under each trial's sampled values.
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

    def objective(trial: optuna.Trial) -> float:
        try:
            return train_trial(trial)
        except Interrupted as exc:  # SIGINT/SIGTERM anywhere in the trial
            trial.set_user_attr("interrupted", True)  # FAIL, but not toward sweep.n_trials
            raise KeyboardInterrupt(str(exc)) from exc  # Optuna marks the trial FAIL

    def train_trial(trial: optuna.Trial) -> float:
        study.sampler = make_sampler(cfg, trial.number)  # samplers keep no state of their own
        values = space.sample(trial, cfg)
        trial_overrides = [*space.fixed_overrides(), *overrides, *overrides_of(values)]
        trial.set_user_attr("overrides", trial_overrides)
        finished, running = progress(study)  # running: this trial and other workers' ones
        say(f"trial {trial.number} ({min(finished + len(running), n_total)} of {n_total}): "
            + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()), flush=True)
        trial_cfg = compose(trial_overrides)
        tags = {"role": "trial", "study_name": name, "optuna_trial": str(trial.number),
                "sweep_space": space.name}
        result = run_training(trial_cfg, run_name=f"trial-{trial.number}",
                              parent_run_id=parent, tags=tags, trial=trial)
        trial.set_user_attr("mlflow_run_id", result.run_id)
        trial.set_user_attr("epochs", result.epochs)
        if result.state == "PRUNED":
            raise optuna.TrialPruned(result.error)
        error = None
        if result.state != "COMPLETE" or result.objective is None:
            error = result.error or "no objective value"
        elif not math.isfinite(result.objective):
            error = f"{cfg.sweep.metric} is {result.objective}"
        if error:
            trial.set_user_attr("error", error[:1000])  # the reason, in Optuna too
            raise TrialFailed(error)
        return float(result.objective)

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        state = STATE_NAMES.get(trial.state, trial.state.name)
        if trial.state == TrialState.COMPLETE:
            outcome = f"{cfg.sweep.metric}={trial.value:.4f}"
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
        _finish_parent(mlflow_client, parent, study, status)
    summary = summarize(study, storage_url(cfg), parent)
    if echo:
        print_table(study, str(cfg.sweep.metric))
        say(f"open the MLflow UI: make ui   (then http://127.0.0.1:5000, experiment "
            f"'{cfg.tracking.experiment}', parent run '{name}')")
    return summary


def _finish_parent(mlflow_client: Any, parent: str, study: optuna.Study, status: str) -> None:
    try:
        counts = state_counts(study)
        for key, value in counts.items():
            mlflow_client.log_metric(parent, f"n_{key.lower()}", value)
        log_best(mlflow_client, parent, study, len(study.trials))
        log_plots(mlflow_client, parent, study)
    finally:
        mlflow_client.set_terminated(parent, status=status)


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state in FINISHED_STATES:
            counts[STATE_NAMES[t.state]] += 1
    return counts


def summarize(study: optuna.Study, url: str, parent_run_id: str) -> dict:
    counts = state_counts(study)
    best = best_trial(study)
    return {
        "study_name": study.study_name,
        "storage": public_url(url),
        "parent_run_id": parent_run_id,
        "n_complete": counts["COMPLETE"],
        "n_pruned": counts["PRUNED"],
        "n_fail": counts["FAIL"],
        "best_value": best.value if best else None,
        "best_params": best.params if best else {},
        "best_run_id": best.user_attrs.get("mlflow_run_id") if best else None,
    }


def print_table(study: optuna.Study, metric: str) -> None:
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED_STATES]
    keys = sorted({k for t in trials for k in t.params})
    header = ["trial", "state", metric, "epochs", *keys]
    rows = [header]
    for t in trials:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        epochs = t.user_attrs.get("epochs") or (max(t.intermediate_values, default=-1) + 1)
        rows.append([str(t.number), STATE_NAMES[t.state], value, str(epochs),
                     *[_fmt(t.params.get(k, "-")) for k in keys]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"\nstudy {study.study_name}: {len(trials)} finished trials", flush=True)
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)

