"""Lightning data module over a DataBundle: uint8 batches straight from the memory-mapped cache.

Batches stay uint8 (B, 1, S, S): float conversion, normalisation and the channel repeat happen in
the model on the device, so a loader moves a quarter of the bytes and CPU workers do no maths.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from pipeline.data.bundle import DataBundle
from pipeline.data.transforms import build_augmentation


class ImageRows(Dataset):
    """Rows ``indices`` of a bundle's images as ((1, S, S) or (2, 1, S, S) uint8, label).

    Pickled for worker processes by file name, not by value: each worker maps the cache file
    itself instead of receiving a copy of every image.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray,
        transform: v2.Transform | None = None,
        two_views: bool = False,
    ) -> None:
        self.images = images
        self.labels = labels
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform
        self.two_views = two_views

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row = int(self.indices[i])
        image = torch.from_numpy(np.array(self.images[row], dtype=np.uint8)).unsqueeze(0)
        label = int(self.labels[row])
        if self.two_views:
            return torch.stack([self._view(image), self._view(image)]), label
        return self._view(image), label

    def _view(self, image: torch.Tensor) -> torch.Tensor:
        if self.transform is None:
            return image
        threads = torch.get_num_threads()
        if threads == 1:
            return self.transform(image)
        # One small image gains nothing from intra-op threads, and on a busy 2-core machine they
        # turn a 0.5 ms affine warp into 100 ms. Workers already run single-threaded.
        torch.set_num_threads(1)
        try:
            return self.transform(image)
        finally:
            torch.set_num_threads(threads)

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
    decoded once into memory, so a loader only slices arrays, and augments training images: on a
    CPU-only machine worker processes would take cores from training (0); with a GPU they
    augment while it trains (up to 4, one core left for the main process)."""
    if str(value).lower() == "auto":
        if not (augmented and torch.cuda.is_available()):
            return 0
        return min(4, max(1, (os.cpu_count() or 1) - 1))
    return int(value)


class ChestXrayDataModule(pl.LightningDataModule):
    """train: seeded shuffle (or weighted sampling) with per-sample augmentation; val/test: in
    order, never augmented. ``two_views`` gives two independently augmented views of each training
    image, for the supervised contrastive loss; val/test always give one view."""

    def __init__(
        self,
        bundle: DataBundle,
        batch_size: int,
        num_workers: int | str = 0,
        augmentation: DictConfig | dict | v2.Transform | None = None,
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
        if augmentation is None or isinstance(augmentation, v2.Transform):
            self.augmentation = augmentation
        else:
            self.augmentation = build_augmentation(augmentation)
        self.num_workers = loader_workers(num_workers, augmented=self.augmentation is not None)
        # Validation and test rows are slices of memory, never augmented: workers under auto
        # would only add start-up.
        self.eval_workers = 0 if str(num_workers).lower() == "auto" else self.num_workers

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
        data = ImageRows(
            self.bundle.images, self.bundle.labels, indices, self.augmentation, self.two_views
        )
        generator = torch.Generator().manual_seed(self.seed)
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
            **kwargs,
        )
