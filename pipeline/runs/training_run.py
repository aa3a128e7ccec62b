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

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from pipeline.config import PipelineError
from pipeline.runs.context import Context
from pipeline.runs.cross_validation import AfterFold, FoldCallbacks, run_folds
from pipeline.runs.recording import RunObserver, log_setup, record_fit, training_tags
from pipeline.tracking.runs import close_dead_runs, failure_text, store_full
from pipeline.tracking.schema import RUN_STATUS, Role, State
from pipeline.tracking.transfer import fetch_backbone
from pipeline.training.fit import fit
from pipeline.training.memory import free_memory

log = logging.getLogger(__name__)
# Lightning's start-up chatter (tips, "100% of batches will be used") buries the progress output.
for _name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# Frozen stages stay in eval mode on purpose (BatchNorm statistics of the frozen part).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


@dataclass
class TrainResult:
    run_id: str
    state: State  # COMPLETE | FAIL (PRUNED and INTERRUPTED travel as exceptions)
    metrics: dict[str, float] = field(default_factory=dict)
    objective: float | None = None
    error: str | None = None
    epochs: int = 0

    @property
    def status(self) -> str:
        """The MLflow status the run was closed with."""
        return RUN_STATUS[self.state]


def run_training(
    ctx: Context,
    cfg: DictConfig,
    *,
    role: Role = Role.TRAIN,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    callbacks: Sequence[pl.Callback] = (),
    fold_callbacks: FoldCallbacks | None = None,
    after_fold: AfterFold | None = None,
    raised: Mapping[type[BaseException], State] | None = None,
    started: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` once (or once per fold, with ``objective.cv_folds`` above 1) on the
    context's data and record it as one MLflow run of ``role`` in its store (see module
    docstring).

    ``callbacks`` join the classifier stage's trainer (a timer), ``fold_callbacks(i)`` fold i's
    only (a pruning callback: a single split is fold 0); ``after_fold(i, running mean)`` hears
    each fold of a cross-validated run end. ``raised`` maps exception types that end the run in
    a named state and travel on (``{TrialPruned: State.PRUNED}``). ``started`` hears the run id
    as soon as the run exists.
    """
    store = ctx.store
    bundle = ctx.data(cfg)
    fetch_backbone(store, cfg)  # backbone.weights=run:<id>: its backbone, before any run opens
    if role in (Role.TRAIN, Role.RERUN):
        close_dead_runs(store)
    result = None
    tags = {**training_tags(cfg, bundle), **(tags or {})}
    with store.open_run(role, parent_run_id, run_name, raised=raised, **tags) as run:
        if started is not None:
            started(run.id)
        try:
            log_setup(cfg, bundle, store, run.id)
            if int(cfg.objective.get("cv_folds", 1) or 1) > 1:
                metrics, epochs = run_folds(cfg, bundle, store, run.id, callbacks=callbacks,
                                            fold_callbacks=fold_callbacks, after_fold=after_fold)
            else:
                extra = list(fold_callbacks(0)) if fold_callbacks else []
                fitted = fit(cfg, bundle, observer=RunObserver(store, run.id),
                             callbacks=[*callbacks, *extra])
                metrics, epochs = record_fit(cfg, bundle, store, run.id, fitted), fitted.epochs
            result = TrainResult(run_id=run.id, state=State.COMPLETE, metrics=metrics,
                                 objective=metrics.get(str(cfg.trainer.monitor)), epochs=epochs)
        except Exception as exc:
            # A bug, or an exception the caller names: the run closes with it, and it travels on.
            if any(isinstance(exc, kind) for kind in raised or {}) or not training_failure(exc):
                raise
            error = failure_text(exc, store.uri)
            run.end(State.FAIL, error)
            log.warning("run %s failed: %s", run.id, error)
            result = TrainResult(run_id=run.id, state=State.FAIL, error=error)
        finally:
            free_memory()
    return result


def training_failure(exc: BaseException) -> bool:
    """A training that failed for a reason of its own: a bad config (sampled or typed), a
    non-finite loss, out of memory, a CUDA error, a full disk. Anything else is a bug."""
    from hydra.errors import InstantiationException

    if isinstance(exc, PipelineError | InstantiationException | MemoryError):
        return True
    if isinstance(exc, torch.OutOfMemoryError | torch.AcceleratorError):
        return True
    if store_full(exc):  # a cache or a store that could not be written: a full disk
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        m in text for m in ("CUDA", "cuDNN", "CUBLAS", "NCCL", "out of memory"))
