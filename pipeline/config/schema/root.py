"""The top of the config (conf/config.yaml): every group typed by the schema all its options share
(an option whose keys go further names its own schema in its defaults list), and the groups with
one option: objective, tracking, sweep. Types live here, values in conf/."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from omegaconf import MISSING

from pipeline.config.schema.dataset import Dataset
from pipeline.config.schema.groups import (
    Backbone,
    CrossEntropy,
    NoAugmentation,
    NoSchedule,
    Optimizer,
)
from pipeline.config.schema.kinds import Direction, Number
from pipeline.config.schema.trainer import Trainer


@dataclass
class Objective:
    metric: str = MISSING
    direction: Direction = MISSING
    cv_folds: int = MISSING


@dataclass
class Tracking:
    uri: str | None = MISSING
    experiment: str = MISSING
    log_model: bool = MISSING
    allow_pickle: bool = MISSING  # load models stored as pickles (trusted stores only)


@dataclass
class Sweep:
    space: str = MISSING
    n_trials: int = MISSING
    timeout: Number | None = MISSING
    # The objective's keys under the names users type (conf/sweep: interpolations of them).
    metric: str = MISSING
    direction: str = MISSING
    cv_folds: int = MISSING
    sampler: Annotated[str, Literal["tpe", "random"]] = MISSING
    startup_trials: int = MISSING
    pruner: Annotated[str, Literal["median", "hyperband", "none"]] = MISSING
    pruner_startup_trials: int = MISSING
    pruner_warmup_epochs: int = MISSING
    cv_keep_percentile: Number = MISSING
    storage: str | None = MISSING
    study_name: str | None = MISSING
    backbones: list[str] | None = MISSING
    baselines: Annotated[str, Literal["papers", "none"]] = MISSING
    patience: int | None = MISSING
    min_delta: Number = MISSING
    target: Number | None = MISSING
    heartbeat_interval: int = MISSING
    grace_period: int = MISSING
    max_retry: int = MISSING
    max_consecutive_failures: int = MISSING


@dataclass
class Select:
    dataset: str | None = MISSING
    fingerprint: str | None = MISSING
    metric: str = MISSING
    direction: Direction = MISSING
    model_name: str = MISSING
    bootstrap: int = MISSING
    operating_point: str = MISSING  # its grammar: pipeline.evidence.operating_point.parse
    calibrate: bool = MISSING
    ensemble: int = MISSING


@dataclass
class Evaluate:
    # A mapping of dataset class -> model class, or null (pipeline.runs.external checks it:
    # OmegaConf cannot merge an override into a typed mapping that is null).
    label_map: Any = MISSING


@dataclass
class Rerun:
    allow_data_change: bool = MISSING


@dataclass
class Config:
    dataset: Dataset = field(default_factory=Dataset)
    backbone: Backbone = field(default_factory=Backbone)
    head: Any = MISSING  # untyped: a head's keys are its factory's arguments (instantiate checks)
    loss: CrossEntropy = field(default_factory=CrossEntropy)
    augmentation: NoAugmentation = field(default_factory=NoAugmentation)
    optimizer: Optimizer = field(default_factory=Optimizer)
    scheduler: NoSchedule = field(default_factory=NoSchedule)
    objective: Objective = field(default_factory=Objective)
    trainer: Trainer = field(default_factory=Trainer)
    tracking: Tracking = field(default_factory=Tracking)
    sweep: Sweep = field(default_factory=Sweep)
    seed: int = MISSING
    state_dir: str = MISSING
    evaluate_test: bool = MISSING
    select: Select = field(default_factory=Select)
    evaluate: Evaluate = field(default_factory=Evaluate)
    rerun: Rerun = field(default_factory=Rerun)
