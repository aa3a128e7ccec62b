"""What a run's loaders serve and how its network finishes from there: one object, both sides.

Plain inputs are images (every stage runs). Cached inputs are the frozen prefix's outputs, read
from the feature cache: validation and test always, training batches when nothing augments them;
the network then runs only ``stages[depth:]`` and the head. Callers ask this object for feature
maps and predictions and never see a depth.
"""

from __future__ import annotations

import os

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.data import DataLoader

from pipeline.data.datamodule import ChestXrayDataModule
from pipeline.models import ChestXrayNet
from pipeline.training.features.loaders import FeatureDataModule
from pipeline.training.features.store import FeatureStore, feature_policy, worthwhile


class Inputs:
    """Raw images through the whole network (``depth`` 0), or cached frozen features."""

    def __init__(self, data: ChestXrayDataModule | FeatureDataModule, train_depth: int = 0,
                 eval_depth: int = 0):
        self.data = data
        self._train_depth = train_depth
        self._eval_depth = eval_depth

    def feature_map(self, net: ChestXrayNet, x: Tensor, training: bool) -> Tensor:
        """The backbone's last feature map for a batch this object's loaders served."""
        start = self._train_depth if training else self._eval_depth
        return net.features_from(x, start) if start else net.forward_features(x)

    def prediction_loader(self, split: str) -> DataLoader:
        """The ``val`` or ``test`` batches in order, for full-precision prediction."""
        if isinstance(self.data, FeatureDataModule):
            return self.data.prediction_loader(split)
        return self.data.val_dataloader() if split == "val" else self.data.test_dataloader()

    @torch.no_grad()
    def predict(self, net: ChestXrayNet, split: str, device: torch.device
                ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and targets of one split, in order (no augmentation)."""
        net = net.to(device).eval()
        probs, targets = [], []
        for x, y in self.prediction_loader(split):
            logits = net.classify(self.feature_map(net, x.to(device), training=False))
            probs.append(logits.float().softmax(dim=1).cpu())
            targets.append(y)
        return torch.cat(probs).numpy(), torch.cat(targets).numpy()

    def describe(self) -> str:
        """What the loaders take from the feature cache: off | eval | train+eval."""
        if not self._eval_depth:
            return "off"
        return "train+eval" if self._train_depth else "eval"

    @property
    def datamodule(self) -> pl.LightningDataModule:
        return self.data


def inputs_for(
    cfg: DictConfig,
    net: ChestXrayNet,
    data: ChestXrayDataModule,
    *,
    root: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    autocast: torch.dtype | None = None,
) -> Inputs:
    """Cached frozen features where ``trainer.feature_cache`` and the training setup allow (see
    pipeline.training.features.store), else the images themselves."""
    policy = feature_policy(cfg)
    if policy == "off" or net.freeze_depth < 1:
        return Inputs(data)
    if policy == "auto" and not worthwhile(net, int(data.bundle.image_size)):
        return Inputs(data)
    train = data.augmentation is None and not data.two_views
    store = FeatureStore(root, net, data.bundle, device, backbone=str(cfg.backbone.name))
    cached = FeatureDataModule(data, store, train=train, autocast=autocast)
    return Inputs(cached, store.depth if train else 0, store.depth)
