"""The run's own Lightning callbacks: each epoch's metrics to an observer, the best weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import lightning.pytorch as pl
import numpy as np
import torch

from pipeline.models import ChestXrayNet


class Observer(Protocol):
    """Who hears of a run as it trains (the tracking stage records it; tests may listen)."""

    def network(self, net: ChestXrayNet, feature_cache: str) -> None:
        """The network is built: its weights, its parameter counts, what the cache serves."""

    def epoch(self, step: int, values: Mapping[str, float]) -> None:
        """One epoch's train_* and val_* values (step: epochs so far, pre-training included)."""


class Silent:
    """An observer that records nothing."""

    def network(self, net: ChestXrayNet, feature_cache: str) -> None:
        pass

    def epoch(self, step: int, values: Mapping[str, float]) -> None:
        pass


class EpochMetrics(pl.Callback):
    """Per-epoch train_* and val_* values to the observer and the history; first in the list, so
    they are recorded before pruning or early stopping act on them."""

    def __init__(self, observer: Observer):
        self.observer = observer
        self.history: dict[str, list[float]] = {}
        self.epoch_offset = 0  # two-stage training: classifier epochs follow pre-training ones
        self._logged: set[int] = set()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, module)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._record(trainer, module)  # epochs without validation (pre-training)

    def _record(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        step = self.epoch_offset + trainer.current_epoch
        if step in self._logged:
            return
        self._logged.add(step)
        values = dict(module.train_epoch_metrics())
        values.update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
        )
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)
        self.observer.epoch(step, values)


class BestWeights(pl.Callback):
    """The best epoch's weights on ``monitor``, kept in memory: ModelCheckpoint(save_top_k=1)
    without writing the whole network to disk at every improvement (Lightning has no in-memory
    checkpoint). Only what training can change is copied (trainable parameters, and buffers
    outside the frozen stages); a NaN value counts as the worst, and ties keep the earlier epoch."""

    def __init__(self, monitor: str, mode: str):
        self.monitor = monitor
        self.mode = mode
        self.best_value: float | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if not np.isfinite(value):
            value = -np.inf if self.mode == "max" else np.inf
        better = self.best_value is None or (
            value > self.best_value if self.mode == "max" else value < self.best_value)
        if better:
            self.best_value = value
            self.state = {k: v.detach().clone() for k, v in _changeable(module).items()}

    def restore(self, module: pl.LightningModule) -> bool:
        """Load the best weights into ``module``; False when no epoch was validated."""
        if self.state is None:
            return False
        module.load_state_dict(self.state, strict=False)
        return True


def _changeable(module: pl.LightningModule) -> dict[str, torch.Tensor]:
    """The state entries training can change: all but the frozen stages' parameters and buffers
    (frozen stages stay in eval mode, so even their BatchNorm statistics hold still)."""
    net = getattr(module, "net", None)
    frozen: tuple[str, ...] = ()
    if isinstance(net, ChestXrayNet):
        frozen = tuple(f"net.backbone.stages.{i}." for i in range(net.freeze_depth))
    return {k: v for k, v in module.state_dict(keep_vars=True).items()
            if not k.startswith(frozen)}


def best_epoch(values: list[float], mode: str) -> int:
    """Index of the best value (NaN the worst); 0 when there is none."""
    if not values:
        return 0
    arr = np.asarray(values, dtype=float)
    arr = np.where(np.isfinite(arr), arr, -np.inf if mode == "max" else np.inf)
    return int(np.argmax(arr) if mode == "max" else np.argmin(arr))
