"""One fit: data bundle + config -> the best epoch's network, its validation (and test) scores.

Nothing here records anything: an ``Observer`` hears of the network and of every epoch, and the
caller keeps what comes back. Exceptions travel up as they are (a pruning callback's, a
non-finite loss, an interrupt): the caller decides what each one means for its run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import DictConfig

from pipeline.config import state_dir
from pipeline.data.bundle import DataBundle
from pipeline.data.datamodule import ChestXrayDataModule
from pipeline.evidence.metrics import nll
from pipeline.models import ChestXrayNet, build_model
from pipeline.training.callbacks import BestWeights, EpochMetrics, Observer, Silent, best_epoch
from pipeline.training.checks import check_training
from pipeline.training.features.inputs import inputs_for
from pipeline.training.features.store import features_dir
from pipeline.training.metrics import score
from pipeline.training.module import ChestXrayModule
from pipeline.training.trainer import (
    autocast_dtype,
    make_trainer,
    monitor,
    resolve_precision,
    uses_gpu,
)


@dataclass
class Fitted:
    """What a fit leaves: the best epoch's network (eval mode, on the CPU) and its scores."""

    net: ChestXrayNet
    metrics: dict[str, float]  # val_* (test_* too with evaluate_test), with val_loss/test_loss
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (probabilities, targets)
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0  # epochs trained, contrastive pre-training included
    best_epoch: int = 0
    positive_index: int | None = None


def fit(
    cfg: DictConfig,
    bundle: DataBundle,
    *,
    observer: Observer | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> Fitted:
    """Train ``cfg`` on ``bundle``; ``callbacks`` join the classifier stage's trainer right after
    the epoch recorder (a pruning callback, a timer), before early stopping."""
    check_training(cfg)
    observer = observer or Silent()
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    num_classes = len(bundle.classes)
    net = build_model(cfg, num_classes)
    net.set_freeze_depth(int(cfg.backbone.freeze_depth))
    if uses_gpu(cfg) and str(cfg.trainer.channels_last).lower() in ("auto", "true"):
        net = net.to(memory_format=torch.channels_last)  # NHWC convolutions on tensor cores
    positive = bundle.classes.index(bundle.positive_class) if bundle.positive_class else None
    class_weights = bundle.class_weights() if cfg.loss.get("class_weights") else None
    epochs = EpochMetrics(observer)
    supcon = cfg.loss.name == "supcon"

    if supcon and cfg.loss.mode == "two_stage":
        # Stage 1: contrastive pre-training of backbone + projection on two views per image.
        pre = ChestXrayModule(cfg, net, num_classes, positive, class_weights, "pretrain")
        data = ChestXrayDataModule.from_config(cfg, bundle, two_views=True)
        _fit(make_trainer(cfg, [epochs], int(cfg.loss.pretrain_epochs), validate=False), pre,
             data)
        epochs.epoch_offset = int(cfg.loss.pretrain_epochs)
        # Stage 2: the classifier on the frozen, contrastively trained backbone.
        net.set_freeze_depth(net.num_stages)
        two_views = False
    else:
        two_views = supcon

    data = ChestXrayDataModule.from_config(cfg, bundle, two_views=two_views)
    # Keyed by the frozen weights' content, so contrastively pre-trained networks share it too.
    inputs = inputs_for(
        cfg, net, data, root=features_dir(state_dir(cfg)),
        device="cuda" if uses_gpu(cfg) else "cpu",
        autocast=autocast_dtype(resolve_precision(cfg)),
    )
    observer.network(net, inputs.describe())
    module = ChestXrayModule(cfg, net, num_classes, positive, class_weights, "classify", inputs)
    metric, mode = monitor(cfg)
    best = BestWeights(metric, mode)
    trainer_callbacks: list[pl.Callback] = [epochs, *callbacks]
    patience = cfg.trainer.get("early_stopping_patience")
    if patience:
        trainer_callbacks.append(EarlyStopping(monitor=metric, mode=mode, patience=int(patience)))
    trainer_callbacks.append(best)
    trainer = make_trainer(cfg, trainer_callbacks, int(cfg.trainer.max_epochs))
    _fit(trainer, module, inputs.datamodule)

    best.restore(module)
    device = trainer.strategy.root_device
    metrics: dict[str, float] = {}
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ["val", "test"] if cfg.get("evaluate_test") else ["val"]:
        probs, target = inputs.predict(module.net, split, device)
        predictions[split] = (probs, target)
        metrics.update(score(torch.from_numpy(probs), torch.from_numpy(target), positive,
                             f"{split}_"))
        metrics[f"{split}_loss"] = nll(probs, target)
    return Fitted(
        net=module.net.cpu().eval(), metrics=metrics, predictions=predictions,
        history=epochs.history, epochs=epochs.epoch_offset + trainer.current_epoch,
        best_epoch=best_epoch(epochs.history.get(metric, []), mode), positive_index=positive,
    )


def _fit(trainer: pl.Trainer, module: pl.LightningModule, data: pl.LightningDataModule) -> None:
    """``trainer.fit``, then the module's ``log`` methods taken back from the callbacks: Lightning
    binds them to every callback, so a callback the caller keeps would keep the whole network
    (and its memory, after a CUDA out-of-memory error) alive."""
    try:
        trainer.fit(module, datamodule=data)
    finally:
        for callback in trainer.callbacks:
            for name in ("log", "log_dict"):
                vars(callback).pop(name, None)
