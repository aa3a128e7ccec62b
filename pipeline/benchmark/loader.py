"""``loader_img_per_s``, ``loader_vs_synthetic``: images per second the training loader delivers,
through Lightning, to a model that learns nothing: ChestXrayDataModule's train_dataloader over the
decode cache with augmentation=light, against the same module fed random uint8 images held in
memory (the same batching and augmentation); on a GPU, against random uint8 batches already on
it (nothing to gather, pin or move; the same augmentation there)."""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.benchmark.collection import write_collection
from pipeline.benchmark.profiles import Profile, base_overrides, median, say


def bench_loader(state: Path, profile: Profile) -> dict[str, Any]:
    import torch

    from pipeline.config import compose
    from pipeline.config import state_dir as resolve_state_dir
    from pipeline.data.bundle import build_bundle
    from pipeline.data.datamodule import ChestXrayDataModule

    root = write_collection(state / "loader-images", profile.loader_images, profile.loader_size)
    cfg = compose([*base_overrides(state / "loader", profile), "dataset=imagefolder",
                   f"dataset.root={root}", f"dataset.image_size={profile.loader_size}",
                   f"dataset.batch_size={profile.loader_batch}", "augmentation=light"])
    bundle = build_bundle(cfg.dataset, resolve_state_dir(cfg))
    noise = np.random.default_rng(0).integers(0, 256, bundle.images.shape, dtype=np.uint8)
    on_gpu = torch.cuda.is_available()
    synthetic = (_on_device_module() if on_gpu else ChestXrayDataModule).from_config(
        cfg, dataclasses.replace(bundle, images=noise))
    modules = {"real": ChestXrayDataModule.from_config(cfg, bundle), "synthetic": synthetic}
    rates: dict[str, list[float]] = {"real": [], "synthetic": []}
    for round_ in range(profile.loader_rounds):  # alternately, so load on the machine hits both
        for name in sorted(modules, reverse=bool(round_ % 2)):
            rates[name].append(_images_per_s(modules[name], profile.loader_epochs))
    ratios = [r / s for r, s in zip(rates["real"], rates["synthetic"], strict=True)]
    real, synthetic = median(rates["real"]), median(rates["synthetic"])
    say(f"training loader at {profile.loader_size} px, augmentation=light: {real:.0f} img/s "
        f"from the cache, {synthetic:.0f} img/s from memory")
    return {
        "loader_img_per_s": real,
        "loader_vs_synthetic": median(ratios),
        "details": {"images": len(bundle.indices("train")), "image_size": profile.loader_size,
                    "batch_size": profile.loader_batch, "threads": torch.get_num_threads(),
                    "device": "cuda" if on_gpu else "cpu",
                    "synthetic": "uint8 batches on the GPU" if on_gpu else "uint8 in memory",
                    "real_img_per_s": rates["real"], "synthetic_img_per_s": rates["synthetic"],
                    "ratios": ratios},
    }


class _OnDevice:
    """Training batches sliced from uint8 images already on the GPU, reshuffled every epoch."""

    def __init__(self, images: Any, labels: Any, batch_size: int) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Any:
        import torch

        order = torch.randperm(len(self.labels), device=self.labels.device)
        for i in range(0, len(order), self.batch_size):
            rows = order[i : i + self.batch_size]
            yield self.images[rows], self.labels[rows]


def _on_device_module() -> type:
    """ChestXrayDataModule whose training batches are already on the GPU (data imported late)."""
    import torch

    from pipeline.data.datamodule import ChestXrayDataModule

    class OnDevice(ChestXrayDataModule):
        def train_dataloader(self) -> Any:  # noqa: D102 -- an iterable Lightning accepts
            rows = torch.from_numpy(self.bundle.indices("train"))
            images = torch.from_numpy(np.asarray(self.bundle.images))[rows].unsqueeze(1)
            labels = torch.from_numpy(np.asarray(self.bundle.labels, dtype=np.int64))[rows]
            return _OnDevice(images.cuda(), labels.cuda(), self.batch_size)

    return OnDevice


def _images_per_s(data: Any, epochs: int) -> float:
    """One fit of ``epochs`` epochs; the rate of the epochs after the first (warm-up)."""
    import lightning.pytorch as pl

    model, timer = _idle_model_and_timer()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[timer])
    with warnings.catch_warnings():  # no optimizer, few workers: as intended here
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    return median(timer.rates[1:] or timer.rates)


def _idle_model_and_timer() -> tuple[Any, Any]:
    """A model that takes each batch and does nothing with it, and a callback timing epochs
    (Lightning imported on first use, as in benchmark.bare)."""
    import lightning.pytorch as pl
    import torch

    class Idle(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> None:
            return None

        def configure_optimizers(self) -> None:
            return None

    class EpochRate(pl.Callback):
        """Images per second of each training epoch, first batch fetch to last batch done."""

        def __init__(self) -> None:
            self.rates: list[float] = []
            self._start = 0.0
            self._images = 0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self._start, self._images = time.perf_counter(), 0

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            self._images += len(batch[1])

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the augmentation runs asynchronously there
            self.rates.append(self._images / (time.perf_counter() - self._start))

    return Idle(), EpochRate()
