"""Sizes of a benchmark run (quick, full, smoke) and the figures it reports with their targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

KEYS = ("pipeline_vs_bare", "decode_cache_speedup", "feature_cache_speedup", "pruning_saved",
        "rss_growth", "cv_cost", "decode_parallel_speedup", "warm_scan_ratio",
        "scan_rss_per_10k_images", "loader_img_per_s", "loader_vs_synthetic",
        "time_to_naive_best", "gpu_img_per_s", "gpu_utilisation")


PARTS = ("bare", "decode", "features", "pruning", "rss", "cv", "scale", "loader", "naive")
# What `--gpu` measures (profile gpu): DenseNet121 against a bare loop with the GPU's use, and
# the loader on the GPU path.
GPU_PARTS = ("gpu", "loader")


# scan_rss_per_10k_images (MiB of heap per 10,000 images, the cache map excluded): a scan keeps
# a few hundred bytes of names, labels and hashes per image (about 20 MiB per 10,000 measured)
# and decodes in worker processes that hold one image at a time; 100 MiB leaves room for the
# transient copies of pandas and JSON, and would catch images held in memory (50 KiB each).
TARGETS = {"pipeline_vs_bare": (">=", 0.95), "decode_cache_speedup": (">=", 10.0),
           "feature_cache_speedup": (">=", 10.0), "pruning_saved": (">=", 0.3),
           "rss_growth": ("<=", 1.10), "cv_cost": ("<=", 1.5),
           "decode_parallel_speedup": (">=", 1.6), "warm_scan_ratio": ("<=", 0.10),
           "scan_rss_per_10k_images": ("<=", 100.0), "loader_img_per_s": (">=", 2000.0),
           "loader_vs_synthetic": (">=", 0.9), "time_to_naive_best": ("<=", 0.25),
           # timm's published DenseNet121 training rate on an RTX 3090 (bf16, channels_last);
           # the GPU's use while the pipeline trains (a kernel running, as NVML counts it)
           "gpu_img_per_s": (">=", 914.0), "gpu_utilisation": (">=", 0.9)}


@dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run; the defaults are the protocol's counts (10-trial feature sweep,
    12-trial pruning study, RSS after trials 2 and 20)."""

    name: str
    # pipeline vs bare loop
    bare_overrides: tuple[str, ...]
    bare_epochs: int  # per run; the first is warm-up
    # decode cache
    decode_repeats: int  # decode epochs (cache epochs: 3x as many)
    # feature cache sweep, pruning study (default search space), resident memory over one sweep
    feature_overrides: tuple[str, ...]
    prune_overrides: tuple[str, ...]
    rss_overrides: tuple[str, ...]
    # torch threads (None: torch's default). Two OpenMP threads on a 2-core machine that other
    # processes share spin-wait each other into 3-4x slower epochs; one thread keeps quick
    # figures stable there.
    threads: int | None = None
    log_model: bool = False
    bare_rounds: int = 3  # pipeline runs; all but the first alternate epochs with the bare loop
    decode_size: int = 224
    decode_limit: int | None = None  # training images per epoch (None: all)
    feature_trials: int = 10
    prune_trials: int = 12
    rss_early: int = 2
    rss_trials: int = 20
    learning_rates: tuple[float, float] = (1e-4, 3e-2)
    # k-fold study over single-split study, the same trials (cv_cost)
    cv_overrides: tuple[str, ...] = ("backbone=resnet18", "dataset.image_size=32",
                                     "dataset.num_images=240")
    cv_trials: int = 12
    cv_folds: int = 5
    # a collection of encoded files, scanned cold and warm (benchmark.scale)
    scale_images: int = 10_000
    scale_source: int = 256  # px of the files written
    scale_size: int = 224  # working size they are decoded to
    scale_blocks: int = 5  # decode_parallel_speedup: blocks decoded both ways, alternately
    # the training loader at 224 px with augmentation=light (benchmark.loader)
    loader_images: int = 3_000
    loader_size: int = 224
    loader_batch: int = 32
    loader_epochs: int = 3  # per fit; the first is warm-up
    loader_rounds: int = 5  # fits of each loader, alternately
    # time_to_naive_best (benchmark.naive): our sweep against the naive Optuna + Lightning study,
    # the same trials and space (sweeps/default.yaml), on generated radiographs written as PNG
    naive_backbone: str = "resnet18"
    naive_images: int = 300
    naive_size: int = 32
    naive_trials: int = 12
    naive_overrides: tuple[str, ...] = ()
    # benchmark.gpu: the images of the DenseNet121 runs (scale_source px files, read at 224 px)
    gpu_images: int = 4_000


def _data(backbone: str, size: int, images: int, *more: str) -> tuple[str, ...]:
    return (f"backbone={backbone}", f"dataset.image_size={size}", f"dataset.num_images={images}",
            *more)


QUICK = Profile(
    name="quick",
    threads=1,
    bare_overrides=_data("resnet18", 64, 400, "dataset.batch_size=32"),
    bare_epochs=5,
    decode_repeats=2,
    feature_overrides=_data("densenet121", 64, 320, "dataset.batch_size=32",
                            "trainer.max_epochs=10"),
    prune_overrides=_data("resnet18", 32, 240),
    rss_overrides=_data("resnet18", 32, 120, "trainer.max_epochs=2"),
)


FULL = Profile(
    name="full",
    log_model=True,
    bare_overrides=_data("densenet121", 224, 600, "dataset.batch_size=32"),
    bare_epochs=3,
    decode_repeats=3,
    feature_overrides=_data("densenet121", 224, 600, "dataset.batch_size=32",
                            "trainer.max_epochs=10"),
    prune_overrides=_data("densenet121", 224, 600),
    rss_overrides=_data("densenet121", 224, 600, "trainer.max_epochs=2"),
    cv_overrides=_data("densenet121", 224, 600),
)


# A seconds-long run of every part, for the test suite (figures meaningless).
SMOKE = Profile(
    name="smoke",
    bare_overrides=_data("resnet18", 32, 60, "dataset.batch_size=16"),
    bare_epochs=2,
    bare_rounds=2,
    decode_size=64,
    decode_repeats=1,
    decode_limit=6,
    feature_overrides=_data("resnet18", 32, 60, "dataset.batch_size=16", "trainer.max_epochs=1"),
    feature_trials=2,
    prune_overrides=_data("resnet18", 32, 60, "trainer.max_epochs=2"),
    prune_trials=2,
    rss_overrides=_data("resnet18", 32, 60, "trainer.max_epochs=1"),
    rss_early=1,
    rss_trials=2,
    cv_overrides=_data("resnet18", 32, 60, "trainer.max_epochs=1"),
    cv_trials=2,
    cv_folds=2,
    scale_images=300,
    scale_source=72,
    scale_size=64,
    scale_blocks=1,
    loader_images=96,
    loader_size=64,
    loader_batch=16,
    loader_epochs=2,
    loader_rounds=1,
    naive_images=40,
    naive_trials=2,
    gpu_images=60,
    naive_overrides=("trainer.max_epochs=1",),
)


# `--gpu`: DenseNet121 at 224 px on one GPU, in under 5 minutes (benchmark.gpu).
GPU = Profile(
    name="gpu",
    bare_overrides=("backbone=densenet121", "dataset.image_size=224", "dataset.batch_size=64"),
    bare_epochs=4,
    decode_repeats=1,
    feature_overrides=(),
    prune_overrides=(),
    rss_overrides=(),
    loader_images=4_000,
    loader_batch=64,
)


PROFILES = {p.name: p for p in (QUICK, FULL, SMOKE, GPU)}


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def base_overrides(state: Path, profile: Profile) -> list[str]:
    db = state / "mlflow.db"
    return [f"state_dir={state}", f"tracking.uri=sqlite:///{db}", "trainer.progress_bar=false",
            f"tracking.log_model={str(profile.log_model).lower()}"]
