"""One training recorded as one MLflow run: the run opened, ``training.fit`` watched into it, its
reports and model logged, and the run closed in the state the training ended in.

``run_training`` is what ``pipeline.train``, every sweep trial and every re-run call. A training
that fails for a reason of its own (a non-finite loss, a bad config, out of memory, a full disk)
closes its run FAILED and comes back as a ``TrainResult``; any other exception is a bug: the run
is closed FAILED with it and it travels on, traceback and all. SIGINT/SIGTERM (``Interrupted``)
closes the run KILLED and travels on, as does any exception the caller names in ``raised`` (a
pruned trial) with the state it names, unchanged.
"""

from __future__ import annotations

import errno
import logging
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from pipeline.config import PipelineError, one_line
from pipeline.data import DataBundle, load_data
from pipeline.tracking import store
from pipeline.tracking.models import log_model
from pipeline.tracking.runs import RUN_STATUS, RunObserver, close_run, log_metrics, start_run
from pipeline.tracking.search import best_of
from pipeline.training.fit import Fitted, fit
from pipeline.training.reports import write_curves, write_reports
from pipeline.training.signals import Interrupted
from pipeline.training.template import free_memory

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
    raised: Mapping[type[BaseException], str] | None = None,
    started: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` once and record it as one MLflow run (see module docstring).

    ``callbacks`` join the classifier stage's trainer (a pruning callback, a timer). ``raised``
    maps exception types that end the run in a named state and travel on (``{TrialPruned:
    "PRUNED"}``). ``started`` hears the run id as soon as the run exists.
    """
    mlflow_client = store.client(cfg)
    bundle = load_data(cfg)
    run_id = start_run(
        cfg, bundle, mlflow_client, run_name=run_name, parent_run_id=parent_run_id, tags=tags
    )
    if started is not None:
        started(run_id)
    result = TrainResult(run_id=run_id, state="FAIL")
    try:
        fitted = fit(cfg, bundle, observer=RunObserver(mlflow_client, run_id),
                     callbacks=callbacks)
        result = record(cfg, bundle, mlflow_client, run_id, fitted)
    except Interrupted as exc:
        close_run(mlflow_client, run_id, "INTERRUPTED", str(exc))
        raise
    except BaseException as exc:
        state = next((s for kind, s in (raised or {}).items() if isinstance(exc, kind)), None)
        if state is not None:
            close_run(mlflow_client, run_id, state, str(exc))
            raise
        result.error = f"{type(exc).__name__}: {one_line(exc)}"
        if not training_failure(exc):  # a bug: the run is FAILED, the traceback travels on
            close_run(mlflow_client, run_id, "FAIL", result.error)
            raise
        log.warning("run %s failed: %s", run_id, result.error)
    finally:
        free_memory()
    close_run(mlflow_client, run_id, result.state, result.error)
    return result


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
    return isinstance(exc, RuntimeError) and any(
        m in text for m in ("CUDA", "cuDNN", "CUBLAS", "NCCL", "out of memory"))


def record(cfg: DictConfig, bundle: DataBundle, mlflow_client: Any, run_id: str,
           fitted: Fitted) -> TrainResult:
    """The fit's final scores, its figures and reports, and the model, into the run. The best
    epoch's validation scores go under their own names (``best_val_auroc``), apart from the
    per-epoch ``val_*`` values, so nothing ranks on "the last value logged"."""
    final = {(best_of(k) if k.startswith("val_") else k): v for k, v in fitted.metrics.items()}
    log_metrics(mlflow_client, run_id, {**final, "best_epoch": fitted.best_epoch}, fitted.epochs)
    with tempfile.TemporaryDirectory(prefix=f"run-{run_id}-") as tmp:
        out = Path(tmp)
        write_curves(out, fitted.history)
        for split, (probs, target) in fitted.predictions.items():
            prefix = "" if split == "val" else "test_"
            write_reports(out, probs, target, bundle.classes, fitted.positive_index, prefix)
        mlflow_client.log_artifacts(run_id, str(out))
    if cfg.tracking.get("log_model", True):
        log_model(fitted.net, bundle, run_id)
    return TrainResult(run_id=run_id, state="COMPLETE", metrics=fitted.metrics,
                       objective=fitted.metrics.get(str(cfg.trainer.monitor)),
                       epochs=fitted.epochs)
