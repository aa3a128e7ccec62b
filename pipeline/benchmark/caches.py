"""``decode_cache_speedup``, ``feature_cache_speedup``: each cache against doing the work again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.benchmark.profiles import Profile, base_overrides, median, say


def bench_decode(state: Path, profile: Profile) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from pipeline.config import PROJECT_ROOT, compose
    from pipeline.data.bundle import load_data
    from pipeline.data.datamodule import ImageRows, rows_batch
    from pipeline.data.images import decode_image

    root = PROJECT_ROOT.parent / "shared" / "data" / "covid-chestxray-sample"
    if not (root / "metadata.csv").is_file():
        return {"decode_cache_speedup": None,
                "decode_cache_speedup_reason": f"{root} is not there"}
    cfg = compose([*base_overrides(state, profile), "dataset=covid_chestxray",
                   f"dataset.root={root}", f"dataset.image_size={profile.decode_size}"])
    start = time.perf_counter()
    bundle = load_data(cfg)  # decodes every image once, into the cache
    build_s = time.perf_counter() - start
    rows = bundle.indices("train")[: profile.decode_limit]
    batch_size = int(cfg.dataset.batch_size)

    class Decoding(Dataset):
        """What an epoch costs without the cache: decode and resize every file again."""

        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            row = int(rows[i])
            image = decode_image(bundle.root / bundle.files[row], bundle.image_size)
            return torch.from_numpy(image).unsqueeze(0), int(bundle.labels[row])

    def cached_loader() -> DataLoader:
        """The data module's training loader, over the same images: rows of the memory map."""
        return DataLoader(ImageRows(bundle.images, bundle.labels, rows), batch_size=batch_size,
                          shuffle=True, collate_fn=rows_batch)

    def epoch(loader: DataLoader) -> float:
        begin = time.perf_counter()
        for _ in loader:
            pass
        return time.perf_counter() - begin

    decode_s = [epoch(DataLoader(Decoding(), batch_size=batch_size, shuffle=True))
                for _ in range(profile.decode_repeats)]
    cached_s = [epoch(cached_loader()) for _ in range(3 * profile.decode_repeats)]
    say(f"decode epoch {median(decode_s):.3f} s, cached epoch {median(cached_s):.4f} s "
        f"({len(rows)} images at {bundle.image_size} px)")
    return {
        "decode_cache_speedup": median(decode_s) / median(cached_s),
        "details": {"images": len(rows), "image_size": bundle.image_size,
                    "decode_epoch_s": median(decode_s), "cached_epoch_s": median(cached_s),
                    "cache_build_s": build_s},
    }


def bench_features(state: Path, profile: Profile) -> dict[str, Any]:
    import timm
    import torch

    from pipeline.config import compose
    from pipeline.models.catalog import stage_count
    from pipeline.runs.context import open_context
    from pipeline.runs.training_run import run_training
    from pipeline.tracking.schema import State

    base = [*base_overrides(state, profile), *profile.feature_overrides, "augmentation=none",
            "trainer.early_stopping_patience=null"]
    backbone = compose(base).backbone
    depth = stage_count(backbone)
    # Frozen stages need weights from somewhere (random ones may not be frozen), and none can be
    # downloaded offline: the benchmark saves timm's seeded initialisation itself.
    weights = state / f"{backbone.name}-weights.pt"
    torch.manual_seed(0)
    torch.save(timm.create_model(str(backbone.timm_name)).state_dict(), weights)
    base += [f"backbone.freeze_depth={depth}", f"backbone.weights_path={weights}"]
    ctx = open_context(compose(base))  # one store, one bundle: every trial trains on it
    low, high = profile.learning_rates
    lrs = np.geomspace(low, high, profile.feature_trials)
    wall = {"false": 0.0, "true": 0.0}
    values: dict[str, list[float]] = {"false": [], "true": []}
    for i, lr in enumerate(lrs):
        for cache in ("false", "true"):  # alternately, so load on the machine hits both alike
            start = time.perf_counter()
            cfg = compose([*base, f"optimizer.lr={lr:.6g}", f"trainer.feature_cache={cache}"])
            result = run_training(ctx, cfg, run_name=f"bench-features-{cache}-{i}")
            wall[cache] += time.perf_counter() - start
            if result.state != State.COMPLETE or result.objective is None:
                raise RuntimeError(f"feature-cache trial failed: {result.error}")
            values[cache].append(float(result.objective))
        say(f"trial {i + 1}/{len(lrs)} lr={lr:.3g}: {values['false'][-1]:.4f} uncached, "
            f"{values['true'][-1]:.4f} cached; so far {wall['false']:.1f} s vs "
            f"{wall['true']:.1f} s")
    best = {k: max(v) for k, v in values.items()}
    return {
        "feature_cache_speedup": wall["false"] / wall["true"],
        "details": {
            "backbone": str(compose(base).backbone.name),
            "freeze_depth": depth, "trials": len(lrs), "uncached_s": wall["false"],
            "cached_s": wall["true"], "best_uncached": best["false"], "best_cached": best["true"],
            "equal_best": bool(abs(best["false"] - best["true"]) <= 1e-6),
            "max_trial_difference": float(np.max(np.abs(
                np.subtract(values["false"], values["true"])))),
        },
    }
