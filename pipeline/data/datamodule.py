"""Lightning data module over a DataBundle: uint8 batches straight from the memory-mapped cache.

Batches stay uint8 (B, 1, S, S) until they reach the device: training batches are augmented there
a whole batch at a time (pipeline.data.batch_jitter), and float conversion, normalisation and the
channel repeat happen in the model, so a loader moves a quarter of the bytes and does no maths.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from pipeline.data.batch_jitter import BatchJitter
from pipeline.data.bundle import DataBundle
from pipeline.data.transforms import build_augmentation

# The augmentation's own random stream, apart from the shuffle's (both seeded by the seed).
_AUGMENT_STREAM = 0x5EED_A06


def rows_batch(batch: Any) -> Any:
    """Collate of ImageRows: ``__getitems__`` already returns the stacked batch."""
    return batch


class ImageRows(Dataset):
    """Rows ``indices`` of a bundle's images as ((1, S, S) uint8, label); a batch at a time as
    ((B, 1, S, S) uint8, (B,) int64) through ``__getitems__`` (one read of the memory map; its
    loaders collate with ``rows_batch``).

    Pickled for worker processes by file name, not by value: each worker maps the cache file
    itself instead of receiving a copy of every image.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        self.images = images
        self.labels = labels
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.__getitems__([i])
        return x[0], int(y[0])

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        x = torch.from_numpy(np.ascontiguousarray(self.images[rows], dtype=np.uint8))
        return x.unsqueeze(1), torch.from_numpy(np.asarray(self.labels[rows], dtype=np.int64))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        filename = getattr(self.images, "filename", None)
        if isinstance(self.images, np.memmap) and filename:
            state["images"] = None
            state["_images_file"] = str(filename)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        filename = state.pop("_images_file", None)
        self.__dict__.update(state)
        if filename is not None:
            self.images = np.load(filename, mmap_mode="r")


def loader_workers(value: int | str, augmented: bool) -> int:
    """``dataset.num_workers``: a number, or ``auto`` for what suits this machine. Images are
    decoded once into memory and augmented on the device, so a loader only slices arrays: on a
    CPU-only machine worker processes would take cores from training (0); with a GPU and an
    augmented (so uncached) training split they gather and pin the next batches while it trains
    (up to 4, one core left for the main process)."""
    if str(value).lower() == "auto":
        if not (augmented and torch.cuda.is_available()):
            return 0
        return min(4, max(1, (os.cpu_count() or 1) - 1))
    return int(value)


class ChestXrayDataModule(pl.LightningDataModule):
    """train: seeded shuffle (or weighted sampling), augmented per image a batch at a time after
    the transfer to the device (``augment_batch``, seeded); val/test: in order, never augmented.
    ``two_views`` gives two independently augmented views of each training image, for the
    supervised contrastive loss; val/test always give one view."""

    def __init__(
        self,
        bundle: DataBundle,
        batch_size: int,
        num_workers: int | str = 0,
        augmentation: DictConfig | dict | BatchJitter | None = None,
        sampler: str = "none",
        two_views: bool = False,
        seed: int = 42,
    ) -> None:
        super().__init__()
        self.bundle = bundle
        self.batch_size = int(batch_size)
        self.sampler = sampler
        self.two_views = two_views
        self.seed = int(seed)
        if augmentation is None or isinstance(augmentation, BatchJitter):
            self.augmentation = augmentation
        else:
            self.augmentation = build_augmentation(augmentation)
        self.num_workers = loader_workers(num_workers, augmented=self.augmentation is not None)
        # Validation and test rows are slices of memory, never augmented: workers under auto
        # would only add start-up.
        self.eval_workers = 0 if str(num_workers).lower() == "auto" else self.num_workers
        self._augment_generator = torch.Generator().manual_seed(self.seed ^ _AUGMENT_STREAM)

    @classmethod
    def from_config(
        cls, cfg: DictConfig, bundle: DataBundle, two_views: bool = False
    ) -> ChestXrayDataModule:
        """The module as the config asks: dataset.batch_size/num_workers/sampler, augmentation,
        and the global seed."""
        ds = cfg.dataset
        return cls(
            bundle,
            batch_size=ds.batch_size,
            num_workers=ds.num_workers,
            augmentation=cfg.get("augmentation"),
            sampler=ds.get("sampler", "none"),
            two_views=two_views,
            seed=cfg.get("seed", 42),
        )

    @property
    def classes(self) -> list[str]:
        return self.bundle.classes

    def train_dataloader(self) -> DataLoader:
        indices = self.bundle.indices("train")
        data = ImageRows(self.bundle.images, self.bundle.labels, indices)
        generator = torch.Generator().manual_seed(self.seed)
        # A fresh loader (a new fit) draws the augmentation's parameters from the start again.
        self._augment_generator = torch.Generator().manual_seed(self.seed ^ _AUGMENT_STREAM)
        sampler = None
        if self.sampler == "weighted":
            labels = self.bundle.labels[indices]
            counts = np.bincount(labels, minlength=len(self.bundle.classes))
            weights = 1.0 / counts[labels]
            sampler = WeightedRandomSampler(
                torch.as_tensor(weights, dtype=torch.double),
                num_samples=len(indices),
                replacement=True,
                generator=generator,
            )
        # A last batch of one image breaks BatchNorm in training mode: drop only that one.
        drop_last = len(indices) > self.batch_size and len(indices) % self.batch_size == 1
        return self._loader(data, shuffle=sampler is None, sampler=sampler, drop_last=drop_last,
                            generator=generator)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches are augmented here, once on the device the model runs on (the GPU
        when there is one, else this process): loaders move uint8 rows only."""
        trainer = self.trainer
        if trainer is not None and trainer.training:
            return self.augment_batch(batch)
        return batch

    def augment_batch(self, batch: tuple[torch.Tensor, torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch as the model sees it: (B, 1, S, S) uint8 augmented per image, or
        with ``two_views`` (B, 2, 1, S, S), two independent draws of each image."""
        x, y = batch
        if self.augmentation is None:
            return (torch.stack([x, x], dim=1) if self.two_views else x), y
        views = [self.augmentation(x, self._augment_generator)
                 for _ in range(2 if self.two_views else 1)]
        return (torch.stack(views, dim=1) if self.two_views else views[0]), y

    def val_dataloader(self) -> DataLoader:
        return self._ordered("val")

    def test_dataloader(self) -> DataLoader:
        return self._ordered("test")

    def _ordered(self, split: str) -> DataLoader:
        data = ImageRows(self.bundle.images, self.bundle.labels, self.bundle.indices(split))
        return self._loader(data, workers=self.eval_workers, shuffle=False)

    def _loader(self, data: ImageRows, workers: int | None = None, **kwargs: Any) -> DataLoader:
        workers = self.num_workers if workers is None else workers
        return DataLoader(
            data,
            batch_size=self.batch_size,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            collate_fn=rows_batch,
            **kwargs,
        )
