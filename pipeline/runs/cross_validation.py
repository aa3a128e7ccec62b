"""A cross-validated training as one run (``objective.cv_folds=k``, typed ``sweep.cv_folds``):
k fits with the same hyperparameters, one per fold of the train and val patients, all in the
trial's own run (MLflow's UI shows one level of nesting well, so folds are not runs).

The run logs each fold's epochs as ``fold<i>_*``, each fold's best-epoch validation scores as
``fold_val_*`` at step = fold, their mean and standard deviation (``cv_val_*_mean``,
``cv_val_*_std``), the means again as ``best_val_*`` (what selection ranks on), the out-of-fold
validation predictions, and one model: the mean probability of the k fold networks.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline.data.bundle import DataBundle
from pipeline.data.folds import fold_bundle, fold_of_rows
from pipeline.models import ChestXrayNet
from pipeline.runs.recording import RunObserver, predictions_frame, write_outputs
from pipeline.tracking.models import log_model
from pipeline.tracking.search import best_of
from pipeline.tracking.store import Store
from pipeline.training.fit import fit

FoldCallbacks = Callable[[int], Sequence[pl.Callback]]
AfterFold = Callable[[int, float], None]


class FoldObserver(RunObserver):
    """A fold's epochs under ``fold<i>_`` names; the network described once, by the first."""

    def __init__(self, store: Store, run_id: str, fold: int):
        super().__init__(store, run_id)
        self.fold = fold

    def network(self, net: ChestXrayNet, feature_cache: str) -> None:
        if self.fold == 0:
            super().network(net, feature_cache)

    def epoch(self, step: int, values: Mapping[str, float]) -> None:
        super().epoch(step, {f"fold{self.fold}_{k}": v for k, v in values.items()})


def run_folds(
    cfg: DictConfig, bundle: DataBundle, store: Store, run_id: str, *,
    callbacks: Sequence[pl.Callback] = (), fold_callbacks: FoldCallbacks | None = None,
    after_fold: AfterFold | None = None,
) -> tuple[dict[str, float], int]:
    """Train every fold and record the run; returns (the fold means, epochs trained).

    ``fold_callbacks(i)`` join fold i's trainer; ``after_fold(i, running mean of the monitored
    metric)`` hears each fold end (a pruner decides there whether the next fold is worth it).
    """
    k, seed = int(cfg.objective.cv_folds), int(cfg.dataset.seed)
    monitor = str(cfg.trainer.monitor)
    per_fold: list[dict[str, float]] = []
    nets: list[ChestXrayNet] = []
    frames: list[pd.DataFrame] = []
    history: dict[str, list[float]] = {}
    epochs = 0
    folds = fold_of_rows(bundle, k, seed)
    for fold in range(k):
        data = fold_bundle(bundle, folds, fold)
        extra = list(fold_callbacks(fold)) if fold_callbacks else []
        fitted = fit(cfg, data, observer=FoldObserver(store, run_id, fold),
                     callbacks=[*callbacks, *extra])
        epochs += fitted.epochs
        scores = {k_: v for k_, v in fitted.metrics.items() if k_.startswith("val_")}
        per_fold.append(scores)
        store.log(run_id, metrics={f"fold_{m}": v for m, v in scores.items()}, step=fold)
        nets.append(fitted.net)
        frames.append(predictions_frame(data, data.indices("val"), fitted.predictions["val"][0],
                                        [fold] * len(data.indices("val"))))
        history = history or fitted.history
        if after_fold is not None:
            after_fold(fold, float(np.mean([s[monitor] for s in per_fold])))
    means = {m: float(np.mean([s[m] for s in per_fold])) for m in per_fold[0]}
    stds = {m: float(np.std([s[m] for s in per_fold])) for m in per_fold[0]}
    summary = {f"cv_{m}_mean": v for m, v in means.items()}
    summary.update({f"cv_{m}_std": v for m, v in stds.items()})
    summary.update({best_of(m): v for m, v in means.items()})
    store.log(run_id, metrics={**summary, "cv_folds": k}, step=k)
    oof = pd.concat(frames, ignore_index=True)
    with tempfile.TemporaryDirectory(prefix=f"run-{run_id}-") as tmp:
        write_outputs(Path(tmp), bundle, oof, history, None)
        store.log_artifacts(run_id, tmp)
    if cfg.tracking.get("log_model", True):
        log_model(nets, cfg, bundle, run_id, store)
    return means, epochs
