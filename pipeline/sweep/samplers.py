"""The sampler and the pruner a study is created with, from ``sweep.*``."""

from __future__ import annotations

import numpy as np
import optuna
from omegaconf import DictConfig

from pipeline.config.errors import ConfigError


def make_sampler(cfg: DictConfig, worker: int = 0, conditional: bool = False
                 ) -> optuna.samplers.BaseSampler:
    """The study's sampler, made once per worker: seeded from ``seed`` and the worker's index
    (0 for the first; workers seeded alike would draw the same values), so a one-worker study
    repeats its trials from ``seed``. TPE uses the constant liar: a value sampled while other
    workers' trials run stays clear of theirs. A ``conditional`` space (the backbone first, the
    rest depending on it) gets the multivariate TPE over groups of parameters that occur
    together, as Optuna recommends for such spaces."""
    name = str(cfg.sweep.sampler)
    seed = int(np.random.SeedSequence([int(cfg.seed), int(worker)]).generate_state(1)[0])
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=int(cfg.sweep.get("startup_trials", 5)),
            constant_liar=True, multivariate=conditional, group=conditional,
        )
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
