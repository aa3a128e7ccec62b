"""Loaders that serve a split's cached frozen features in place of its images, batch for batch."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pipeline.data.datamodule import ChestXrayDataModule
from pipeline.training.features.store import FeatureStore


class FeatureRows(Dataset):
    """Rows of a cached split as (features, label); fetched a batch at a time (``__getitems__``
    reads one block of the memory map instead of one row per call)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, positions: np.ndarray,
                 dtype: torch.dtype):
        self.features = features
        self.labels = np.asarray(labels, dtype=np.int64)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self.__getitems__([i])
        return x[0], int(y[0])

    def __getitems__(self, items: list[int]) -> tuple[Tensor, Tensor]:
        items = np.asarray(items, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.features[self.positions[items]]))
        if self.dtype == torch.bfloat16:
            x = x.view(torch.int16).view(torch.bfloat16)
        return x, torch.from_numpy(self.labels[items])


def _batch(batch: Any) -> Any:
    """Collate of FeatureRows: ``__getitems__`` already returns the stacked batch."""
    return batch


class FeatureDataModule(pl.LightningDataModule):
    """A ChestXrayDataModule whose loaders serve cached frozen features in place of images: the
    same batches in the same order (the base loader's sampler, batch size and drop_last), with
    ``stages[:store.depth]`` already applied; training batches too when ``train``, else images."""

    def __init__(self, base: ChestXrayDataModule, store: FeatureStore, *, train: bool,
                 autocast: torch.dtype | None = None):
        super().__init__()
        self.base = base
        self.bundle = base.bundle
        self.store = store
        self.autocast = autocast
        self.train = train

    @property
    def classes(self) -> list[str]:
        return self.base.classes

    def train_dataloader(self) -> DataLoader:
        loader = self.base.train_dataloader()
        if not self.train:
            return loader
        if self.base.augmentation is not None or self.base.two_views:
            raise ValueError("training images are augmented: their features cannot be cached")
        return self._swap(loader, "train", self.autocast)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches of images (an augmented split is never cached) are augmented as
        the image module does it; features pass as they are."""
        trainer = self.trainer
        if not self.train and trainer is not None and trainer.training:
            return self.base.augment_batch(batch)
        return batch

    def val_dataloader(self) -> DataLoader:
        return self._swap(self.base.val_dataloader(), "val", self.autocast)

    def test_dataloader(self) -> DataLoader:
        return self._swap(self.base.test_dataloader(), "test", self.autocast)

    def prediction_loader(self, split: str) -> DataLoader:
        """Features of ``split`` for full-precision prediction outside the trainer."""
        base = self.base.val_dataloader() if split == "val" else self.base.test_dataloader()
        return self._swap(base, split, None)

    def _swap(self, loader: DataLoader, split: str, autocast: torch.dtype | None) -> DataLoader:
        split_rows = self.store.rows(split)
        rows = np.asarray(loader.dataset.indices)
        positions = np.searchsorted(split_rows, rows)
        if len(rows) and (positions.max() >= len(split_rows)
                          or not np.array_equal(split_rows[positions], rows)):
            raise ValueError(f"the {split} loader serves rows outside the {split} split")
        data = FeatureRows(self.store.features(split, autocast), self.bundle.labels[rows],
                           positions, self.store.tensor_dtype(split, autocast))
        # Rows come from one memory map, a batch per read: worker processes would only add
        # start-up and copies.
        return DataLoader(
            data, batch_size=loader.batch_size, sampler=loader.sampler,
            drop_last=loader.drop_last, num_workers=0, collate_fn=_batch,
            # The loader draws its base seed from this generator too: the sampler's order
            # then matches the image loader's, and the global RNG (dropout) is left alone.
            generator=loader.generator,
            pin_memory=torch.cuda.is_available() and self.store.device.type == "cuda",
        )
