"""The trainer group: the Lightning Trainer's own arguments, instantiated from the config, kept
apart from the pipeline's keys that sit beside them in conf/trainer/default.yaml."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from omegaconf import MISSING

from pipeline.config.schema.kinds import AutoOrBool, Number


@dataclass
class TrainerArguments:
    """Keys that are ``lightning.pytorch.Trainer`` arguments of the same name: all that
    instantiate is given from the config (pipeline.training.trainer adds what the pipeline
    fixes, and resolves ``precision: auto``)."""

    _target_: Annotated[str, Literal["lightning.pytorch.Trainer"]] = MISSING
    max_epochs: int = MISSING
    accelerator: str = MISSING
    devices: Any = MISSING  # one device (pipeline.training.checks)
    precision: int | str = MISSING
    deterministic: bool = MISSING
    gradient_clip_val: Number | None = MISSING
    limit_train_batches: Number = MISSING
    limit_val_batches: Number = MISSING


@dataclass
class Trainer(TrainerArguments):
    """The pipeline's own keys: never passed to the Trainer."""

    monitor: str = MISSING
    monitor_mode: Annotated[str, Literal["max", "min", "auto"]] = MISSING
    early_stopping_patience: int | None = MISSING
    progress_bar: bool = MISSING  # the Trainer's enable_progress_bar
    feature_cache: AutoOrBool = MISSING
    channels_last: AutoOrBool = MISSING


TRAINER_ARGUMENTS = tuple(f.name for f in dataclasses.fields(TrainerArguments))
