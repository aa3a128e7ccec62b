"""The sampler and the pruner a study is created with, from ``sweep.*``."""

from __future__ import annotations

import numpy as np
import optuna
from omegaconf import DictConfig

from pipeline.config.errors import ConfigError


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
