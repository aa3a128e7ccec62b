"""``pipeline_vs_bare``: pipeline.train epochs against a hand-written PyTorch loop, side by side."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.benchmark.profiles import Profile, base_overrides, median, say


class BareLoop:
    """A hand-written training loop: the backbone from timm with its own classifier, the
    training images in memory as one uint8 tensor, Adam, cross-entropy, no framework. On a GPU
    (where the pipeline's trainer would use one) the images, the model and every step live
    there, with the pipeline's precision (bf16 autocast) and channels_last, as a careful user
    writes it."""

    def __init__(self, cfg: Any, bundle: Any):
        import timm
        import torch

        from pipeline.models.catalog import normalisation
        from pipeline.training.trainer import autocast_dtype, resolve_precision, uses_gpu

        gpu = uses_gpu(cfg)
        self.device = torch.device("cuda" if gpu else "cpu")
        self.autocast = autocast_dtype(resolve_precision(cfg))
        self.channels_last = gpu and str(cfg.trainer.channels_last).lower() in ("auto", "true")
        rows = bundle.indices("train")
        self.images = torch.from_numpy(np.asarray(bundle.images[rows])).unsqueeze(1).to(
            self.device)
        self.labels = torch.from_numpy(bundle.labels[rows].astype(np.int64)).to(self.device)
        self.model = timm.create_model(str(cfg.backbone.timm_name), pretrained=False,
                                       num_classes=len(bundle.classes)).train().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # fp16 (GPUs without bf16) needs its loss scaled; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(enabled=self.autocast == torch.float16)
        mean, std = normalisation(self.model)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.spans: list[tuple[float, float]] = []  # (start, end) of each epoch, perf_counter
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(cfg.optimizer.lr),
                                          fused=bool(cfg.optimizer.fused))
        self.batch_size = int(cfg.dataset.batch_size)
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        self.epochs: list[tuple[int, float]] = []  # (images, seconds)

    def epoch(self) -> None:
        import torch
        import torch.nn.functional as F

        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()  # kernels queued before the epoch are not its time
        start = time.perf_counter()
        order = torch.randperm(len(self.labels), generator=self.generator).to(self.device)
        seen = 0
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two images
            x = self.images[idx].float().div_(255).expand(-1, 3, -1, -1)
            x = (x - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16,
                                enabled=self.autocast is not None):
                logits = self.model(x)
            loss = F.cross_entropy(logits.float(), self.labels[idx])
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            seen += len(idx)
        if cuda:
            torch.cuda.synchronize()  # the epoch ends when its last kernel has
        end = time.perf_counter()
        self.spans.append((start, end))
        self.epochs.append((seen, end - start))


def _epoch_timer(after_epoch: Callable[[], None]):  # -> pl.Callback (Lightning imported lazily)
    import lightning.pytorch as pl
    import torch

    class EpochTimer(pl.Callback):
        """Training images and seconds of each epoch, first batch to last (no validation);
        ``after_epoch`` runs once each epoch has ended (a bare-loop epoch, side by side)."""

        def __init__(self) -> None:
            self.created = time.perf_counter()
            self.first_start: float | None = None
            self.epochs: list[tuple[int, float]] = []
            self.spans: list[tuple[float, float]] = []  # (start, end), perf_counter
            self._start = self._end = 0.0
            self._images = 0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._start = time.perf_counter()
            if self.first_start is None:
                self.first_start = self._start
            self._images = 0

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            self._images += len(batch[1])
            if torch.cuda.is_available() and batch_idx + 1 >= trainer.num_training_batches:
                torch.cuda.synchronize()  # the last batch's kernels are the epoch's time too
            self._end = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.epochs.append((self._images, self._end - self._start))
            self.spans.append((self._start, self._end))
            after_epoch()

    return EpochTimer()


def bench_bare(state: Path, profile: Profile,
               spans: dict[str, list[tuple[float, float]]] | None = None) -> dict[str, Any]:
    """``pipeline_vs_bare``; ``spans`` (given) gets the (start, end) of every timed epoch of
    each loop, under "pipeline" and "bare" (benchmark.gpu samples the GPU's use over them)."""
    import torch

    from pipeline.config import compose
    from pipeline.runs.context import open_context
    from pipeline.runs.training_run import run_training
    from pipeline.tracking.schema import State

    overrides = [*base_overrides(state, profile), *profile.bare_overrides,
                 f"trainer.max_epochs={profile.bare_epochs}",
                 "trainer.early_stopping_patience=null"]
    cfg = compose(overrides)
    pipeline_ips: list[float] = []
    bare_ips: list[float] = []
    ratios: list[float] = []
    startups: list[float] = []
    ctx = None
    for round_ in range(profile.bare_rounds):
        # Epochs alternate: pipeline epoch k, then bare epoch k, so a burst of load from other
        # processes falls on both alike. The first epoch of each is warm-up.
        timer = _epoch_timer(lambda: None)
        if ctx is None:  # the first round's start-up includes opening the store and the data
            ctx = open_context(cfg)
        else:
            bare = BareLoop(cfg, ctx.bundle)
            timer = _epoch_timer(bare.epoch)
        result = run_training(ctx, cfg, run_name="bench-pipeline", callbacks=[timer])
        if result.state != State.COMPLETE:
            raise RuntimeError(f"pipeline run failed: {result.error}")
        startups.append((timer.first_start or timer.created) - timer.created)
        if not round_:
            continue
        for (n_p, s_p), (n_b, s_b) in list(zip(timer.epochs, bare.epochs, strict=True))[1:]:
            pipeline_ips.append(n_p / s_p)
            bare_ips.append(n_b / s_b)
            ratios.append(pipeline_ips[-1] / bare_ips[-1])
        if spans is not None:
            spans.setdefault("pipeline", []).extend(timer.spans[1:])
            spans.setdefault("bare", []).extend(bare.spans[1:])
        say(f"round {round_}: pipeline {pipeline_ips[-1]:.1f} img/s, bare {bare_ips[-1]:.1f} "
            f"img/s, start-up {startups[-1]:.2f} s")
    return {
        "pipeline_vs_bare": median(ratios),
        "startup_s": startups[0],
        "details": {
            "backbone": str(cfg.backbone.name), "image_size": int(cfg.dataset.image_size),
            "batch_size": int(cfg.dataset.batch_size), "threads": torch.get_num_threads(),
            "pipeline_images_per_s": median(pipeline_ips), "bare_images_per_s": median(bare_ips),
            "epoch_ratios": ratios, "startup_s_warm": median(startups[1:]),
        },
    }
