"""The sampler and the pruner a study is created with, from ``sweep.*``."""

from __future__ import annotations

import numpy as np
import optuna
from omegaconf import DictConfig


def make_sampler(cfg: DictConfig, worker: int = 0, conditional: bool = False,
                 resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, made once per worker: seeded from ``seed``, the worker's index
    (0 for the first; workers seeded alike would draw the same values) and ``resumed_at``, the
    trials the study held when this worker joined (a second invocation seeded like the first
    would draw the first one's values again), so a one-worker study repeats its trials from
    ``seed``. TPE uses the constant liar: a value sampled while other
    workers' trials run stays clear of theirs. A ``conditional`` space (the backbone first, the
    rest depending on it) gets the multivariate TPE over groups of parameters that occur
    together, as Optuna recommends for such spaces."""
    entropy = [int(cfg.seed), int(worker)] + ([int(resumed_at)] if resumed_at else [])
    seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    samplers = {  # sweep.sampler: tpe or random (the schema)
        "tpe": lambda: optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=int(cfg.sweep.get("startup_trials", 5)),
            constant_liar=True, multivariate=conditional, group=conditional,
        ),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    return samplers[str(cfg.sweep.sampler)]()


def make_pruner(cfg: DictConfig) -> optuna.pruners.BasePruner:
    """``sweep.pruner`` over the epochs; with ``sweep.cv_folds`` above 1, the folds after the
    first are judged by their running mean (see FoldPruner)."""
    epochs = _epoch_pruner(cfg)
    folds = int(cfg.objective.get("cv_folds", 1) or 1)
    if folds < 2 or str(cfg.sweep.pruner) == "none":
        return epochs
    return FoldPruner(epochs, int(cfg.trainer.max_epochs),
                      float(cfg.sweep.get("cv_keep_percentile", 25.0)))


class FoldPruner(optuna.pruners.BasePruner):
    """A cross-validated study's pruner: the first fold's epochs (steps below ``first_step``)
    by the sweep's pruner, as a single split's; each fold's running mean (steps from
    ``first_step``) kept only in the best ``keep`` percent of the trials that reached that fold,
    against one complete trial at least. Optuna's WilcoxonPruner cannot reject with five paired
    folds before the last one, and a median rule lets half the trials train every fold."""

    def __init__(self, epochs: optuna.pruners.BasePruner, first_step: int, keep: float):
        self.epochs = epochs
        self.first_step = first_step
        self.folds = optuna.pruners.PercentilePruner(keep, n_startup_trials=1, n_warmup_steps=0)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is not None and step >= self.first_step:
            return self.folds.prune(study, trial)
        return self.epochs.prune(study, trial)


def _epoch_pruner(cfg: DictConfig) -> optuna.pruners.BasePruner:
    pruners = {  # sweep.pruner: median, hyperband or none (the schema)
        "median": lambda: optuna.pruners.MedianPruner(
            n_startup_trials=int(cfg.sweep.pruner_startup_trials),
            n_warmup_steps=int(cfg.sweep.pruner_warmup_epochs),
        ),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=max(1, int(cfg.sweep.pruner_warmup_epochs)),
            max_resource=int(cfg.trainer.max_epochs),
        ),
        "none": optuna.pruners.NopPruner,
    }
    return pruners[str(cfg.sweep.pruner)]()
