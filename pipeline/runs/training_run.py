"""One training recorded as one MLflow run: the run opened, ``training.fit`` watched into it, its
reports and model logged, and the run closed in the state the training ended in.

``run_training`` is what ``pipeline.train``, every sweep trial and every re-run call. A training
that fails for a reason of its own (a non-finite loss, a bad config, out of memory, a full disk)
closes its run FAILED and comes back as a ``TrainResult``; any other exception is a bug: the run
is closed FAILED with it and it travels on, traceback and all. SIGINT/SIGTERM (``Interrupted``)
closes the run KILLED and travels on; an exception the caller names in ``raised`` (a pruned
trial) closes it in the state it names (PRUNED: FINISHED, see RUN_STATUS) and travels on unchanged.
"""

from __future__ import annotations

import errno
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from pipeline.config import PipelineError, one_line
from pipeline.data import load_data
from pipeline.runs.cross_validation import AfterFold, FoldCallbacks, run_folds
from pipeline.runs.recording import record_fit
from pipeline.tracking import store
from pipeline.tracking.runs import (
    RUN_STATUS,
    RunObserver,
    close_dead_runs,
    close_run,
    log_setup,
    start_run,
)
from pipeline.training.fit import fit
from pipeline.training.signals import Interrupted
from pipeline.training.template import free_memory

log = logging.getLogger(__name__)
# Lightning's start-up chatter (tips, "100% of batches will be used") buries the progress output.
for _name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# Frozen stages stay in eval mode on purpose (BatchNorm statistics of the frozen part).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


# What SQLite and the OS say when a write finds no space (through MLflow or SQLAlchemy).
FULL_DISK = ("database or disk is full", "No space left on device")


@dataclass
class TrainResult:
    run_id: str
    state: str  # COMPLETE | FAIL (PRUNED and INTERRUPTED travel as exceptions)
    metrics: dict[str, float] = field(default_factory=dict)
    objective: float | None = None
    error: str | None = None
    epochs: int = 0

    @property
    def status(self) -> str:
        """The MLflow status the run was closed with."""
        return RUN_STATUS[self.state]


def run_training(
    cfg: DictConfig,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    callbacks: Sequence[pl.Callback] = (),
    fold_callbacks: FoldCallbacks | None = None,
    after_fold: AfterFold | None = None,
    raised: Mapping[type[BaseException], str] | None = None,
    started: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` once (or once per fold, with ``objective.cv_folds`` above 1) and record it
    as one MLflow run (see module docstring).

    ``callbacks`` join the classifier stage's trainer (a timer), ``fold_callbacks(i)`` fold i's
    only (a pruning callback: a single split is fold 0); ``after_fold(i, running mean)`` hears
    each fold of a cross-validated run end. ``raised`` maps exception types that end the run in
    a named state and travel on (``{TrialPruned: "PRUNED"}``). ``started`` hears the run id as
    soon as the run exists.
    """
    mlflow_client = store.client(cfg)
    bundle = load_data(cfg)
    if (tags or {}).get("role", "train") in ("train", "rerun"):
        close_dead_runs(mlflow_client, store.experiment_id(cfg, mlflow_client))
    run_id = start_run(
        cfg, bundle, mlflow_client, run_name=run_name, parent_run_id=parent_run_id, tags=tags
    )
    if started is not None:
        started(run_id)
    result = TrainResult(run_id=run_id, state="FAIL")
    try:
        log_setup(cfg, bundle, mlflow_client, run_id)
        if int(cfg.objective.get("cv_folds", 1) or 1) > 1:
            metrics, epochs = run_folds(cfg, bundle, mlflow_client, run_id, callbacks=callbacks,
                                        fold_callbacks=fold_callbacks, after_fold=after_fold)
        else:
            extra = list(fold_callbacks(0)) if fold_callbacks else []
            fitted = fit(cfg, bundle, observer=RunObserver(mlflow_client, run_id),
                         callbacks=[*callbacks, *extra])
            metrics, epochs = record_fit(cfg, bundle, mlflow_client, run_id, fitted), fitted.epochs
        result = TrainResult(run_id=run_id, state="COMPLETE", metrics=metrics,
                             objective=metrics.get(str(cfg.trainer.monitor)), epochs=epochs)
    except Interrupted as exc:
        close_run(mlflow_client, run_id, "INTERRUPTED", str(exc))
        raise
    except BaseException as exc:
        state = next((s for kind, s in (raised or {}).items() if isinstance(exc, kind)), None)
        if state is not None:
            close_run(mlflow_client, run_id, state, str(exc))
            raise
        result.error = failure_text(exc, mlflow_client)
        if not training_failure(exc):  # a bug: the run is FAILED, the traceback travels on
            close_run(mlflow_client, run_id, "FAIL", result.error)
            raise
        log.warning("run %s failed: %s", run_id, result.error)
    finally:
        free_memory()
    try:
        close_run(mlflow_client, run_id, result.state, result.error)
    except Exception as exc:  # noqa: BLE001 -- a store that cannot take the close (full disk)
        if not training_failure(exc):
            raise
        log.warning("run %s could not be closed (%s): the next invocation closes it", run_id,
                    one_line(exc))
    return result


def failure_text(exc: BaseException, mlflow_client: Any) -> str:
    """The one line a failed run carries: the exception, or for a store that found no space
    the store and what to do (not the SQL statement it was running)."""
    text = f"{type(exc).__name__}: {one_line(exc)}"
    if any(m in text for m in FULL_DISK) and not isinstance(exc, OSError):
        return (f"{type(exc).__name__}: the MLflow store at {mlflow_client.tracking_uri} "
                "could not be written: database or disk is full (free space there)")
    return text


def training_failure(exc: BaseException) -> bool:
    """A training that failed for a reason of its own: a bad config (sampled or typed), a
    non-finite loss, out of memory, a CUDA error, a full disk. Anything else is a bug."""
    from hydra.errors import InstantiationException

    if isinstance(exc, PipelineError | InstantiationException | MemoryError):
        return True
    if isinstance(exc, torch.OutOfMemoryError | torch.AcceleratorError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    if any(m in text for m in FULL_DISK):  # a store that could not be written: a full disk
        return True
    return isinstance(exc, RuntimeError) and any(
        m in text for m in ("CUDA", "cuDNN", "CUBLAS", "NCCL", "out of memory"))
