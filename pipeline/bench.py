"""Speed figures, each a ratio measured side by side in one run on this machine:
``python -m pipeline.bench [--quick] [--out FILE]``.

- ``pipeline_vs_bare``: training images/s of pipeline.train's epochs (run_training: Lightning,
  MLflow, the data module) over a hand-written PyTorch loop on the same backbone, batch size,
  image size, training images and thread count (validation excluded from both; the first epoch
  of each run is warm-up). One-off start-up is ``startup_s``.
- ``decode_cache_speedup``: an epoch decoding the source JPEG/PNG files of
  ../shared/data/covid-chestxray-sample at 224 px over the same epoch read from the decode cache.
- ``feature_cache_speedup``: wall time of a 10-trial feature-extraction sweep (densenet121, the
  whole backbone frozen, augmentation none; the trials differ in learning rate) without the
  frozen-feature cache over with it, trials of both run alternately; both best values reported.
- ``pruning_saved``: 1 - epochs trained by the median-pruned 12-trial study of the default search
  space over epochs trained by the same study unpruned; both best values reported.
- ``rss_growth``: peak resident memory (VmHWM) after trial 20 of one sweep over after trial 2,
  in a fresh process.

Medians of repeats where a figure is repeated. ``--quick`` (tiny sizes, models not logged) keeps
the whole run under 10 minutes on a 2-core CPU; the full run uses native sizes. State lives in a
temporary folder, removed afterwards. Progress goes to stdout; the LAST line is the JSON object,
also written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

KEYS = ("pipeline_vs_bare", "decode_cache_speedup", "feature_cache_speedup", "pruning_saved",
        "rss_growth")
PARTS = ("bare", "decode", "features", "pruning", "rss")
TARGETS = {"pipeline_vs_bare": (">=", 0.95), "decode_cache_speedup": (">=", 10.0),
           "feature_cache_speedup": (">=", 10.0), "pruning_saved": (">=", 0.3),
           "rss_growth": ("<=", 1.10)}


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
)
PROFILES = {p.name: p for p in (QUICK, FULL, SMOKE)}


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _base(state: Path, profile: Profile) -> list[str]:
    db = state / "mlflow.db"
    return [f"state_dir={state}", f"tracking.uri=sqlite:///{db}", "trainer.progress_bar=false",
            f"tracking.log_model={str(profile.log_model).lower()}"]


# ---- pipeline vs bare loop -----------------------------------------------------------------
class BareLoop:
    """A hand-written training loop: the backbone from timm with its own classifier, the
    training images in memory as one uint8 tensor, Adam, cross-entropy, no framework."""

    def __init__(self, cfg: Any):
        import timm
        import torch

        from pipeline.data import load_data

        bundle = load_data(cfg)
        rows = bundle.indices("train")
        self.images = torch.from_numpy(np.asarray(bundle.images[rows])).unsqueeze(1)
        self.labels = torch.from_numpy(bundle.labels[rows].astype(np.int64))
        self.model = timm.create_model(str(cfg.backbone.timm_name), pretrained=False,
                                       num_classes=len(bundle.classes)).train()
        self.mean = torch.tensor(list(cfg.backbone.mean)).view(1, 3, 1, 1)
        self.std = torch.tensor(list(cfg.backbone.std)).view(1, 3, 1, 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(cfg.optimizer.lr))
        self.batch_size = int(cfg.dataset.batch_size)
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        self.epochs: list[tuple[int, float]] = []  # (images, seconds)

    def epoch(self) -> None:
        import torch
        import torch.nn.functional as F

        start = time.perf_counter()
        order = torch.randperm(len(self.labels), generator=self.generator)
        seen = 0
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two images
            x = self.images[idx].float().div_(255).expand(-1, 3, -1, -1)
            x = (x - self.mean) / self.std
            loss = F.cross_entropy(self.model(x), self.labels[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            seen += len(idx)
        self.epochs.append((seen, time.perf_counter() - start))


def _epoch_timer(after_epoch: Callable[[], None]):  # -> pl.Callback (Lightning imported lazily)
    import lightning.pytorch as pl

    class EpochTimer(pl.Callback):
        """Training images and seconds of each epoch, first batch to last (no validation);
        ``after_epoch`` runs once each epoch has ended (a bare-loop epoch, side by side)."""

        def __init__(self) -> None:
            self.created = time.perf_counter()
            self.first_start: float | None = None
            self.epochs: list[tuple[int, float]] = []
            self._start = self._end = 0.0
            self._images = 0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self._start = time.perf_counter()
            if self.first_start is None:
                self.first_start = self._start
            self._images = 0

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            self._images += len(batch[1])
            self._end = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.epochs.append((self._images, self._end - self._start))
            after_epoch()

    return EpochTimer()


def bench_bare(state: Path, profile: Profile) -> dict[str, Any]:
    import torch

    from pipeline.config import compose
    from pipeline.training import run_training

    overrides = [*_base(state, profile), *profile.bare_overrides,
                 f"trainer.max_epochs={profile.bare_epochs}",
                 "trainer.early_stopping_patience=null"]
    cfg = compose(overrides)
    pipeline_ips: list[float] = []
    bare_ips: list[float] = []
    ratios: list[float] = []
    startups: list[float] = []
    for round_ in range(profile.bare_rounds):
        # Epochs alternate: pipeline epoch k, then bare epoch k, so a burst of load from other
        # processes falls on both alike. The first epoch of each is warm-up.
        timer = _epoch_timer(lambda: None)
        if round_:  # the first round's start-up includes building the data: no bare loop yet
            bare = BareLoop(cfg)
            timer = _epoch_timer(bare.epoch)
        result = run_training(cfg, run_name="bench-pipeline", callbacks=[timer])
        if result.state != "COMPLETE":
            raise RuntimeError(f"pipeline run failed: {result.error}")
        startups.append((timer.first_start or timer.created) - timer.created)
        if not round_:
            continue
        for (n_p, s_p), (n_b, s_b) in list(zip(timer.epochs, bare.epochs, strict=True))[1:]:
            pipeline_ips.append(n_p / s_p)
            bare_ips.append(n_b / s_b)
            ratios.append(pipeline_ips[-1] / bare_ips[-1])
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


# ---- decode cache --------------------------------------------------------------------------
def bench_decode(state: Path, profile: Profile) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from pipeline.config import PROJECT_ROOT, compose
    from pipeline.data import decode_image, load_data
    from pipeline.data.datamodule import ImageRows

    root = PROJECT_ROOT.parent / "shared" / "data" / "covid-chestxray-sample"
    if not (root / "metadata.csv").is_file():
        return {"decode_cache_speedup": None,
                "decode_cache_speedup_reason": f"{root} is not there"}
    cfg = compose([*_base(state, profile), "dataset=covid_chestxray", f"dataset.root={root}",
                   f"dataset.image_size={profile.decode_size}"])
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
                          shuffle=True)

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


# ---- feature cache -------------------------------------------------------------------------
def bench_features(state: Path, profile: Profile) -> dict[str, Any]:
    from pipeline.config import compose
    from pipeline.training import run_training

    base = [*_base(state, profile), *profile.feature_overrides, "augmentation=none",
            "trainer.early_stopping_patience=null"]
    depth = len(compose(base).backbone.stages)
    base.append(f"backbone.freeze_depth={depth}")
    low, high = profile.learning_rates
    lrs = np.geomspace(low, high, profile.feature_trials)
    wall = {"false": 0.0, "true": 0.0}
    values: dict[str, list[float]] = {"false": [], "true": []}
    for i, lr in enumerate(lrs):
        for cache in ("false", "true"):  # alternately, so load on the machine hits both alike
            start = time.perf_counter()
            cfg = compose([*base, f"optimizer.lr={lr:.6g}", f"trainer.feature_cache={cache}"])
            result = run_training(cfg, run_name=f"bench-features-{cache}-{i}")
            wall[cache] += time.perf_counter() - start
            if result.state != "COMPLETE" or result.objective is None:
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


# ---- pruning -------------------------------------------------------------------------------
def bench_pruning(state: Path, profile: Profile) -> dict[str, Any]:
    import optuna

    from pipeline.config import compose
    from pipeline.study import run_study, storage_url

    # Random sampling (seeded): both studies try the same 12 configurations, so they differ in
    # pruning alone (TPE would steer them apart after the first pruned trial).
    overrides = [*_base(state, profile), *profile.prune_overrides,
                 f"sweep.n_trials={profile.prune_trials}", "sweep.space=default",
                 "sweep.sampler=random"]
    epochs: dict[str, int] = {}
    best: dict[str, float | None] = {}
    wall: dict[str, float] = {}
    pruned: dict[str, int] = {}
    for pruner in ("none", "median"):
        run_overrides = [*overrides, f"sweep.pruner={pruner}",
                         f"sweep.study_name=bench-prune-{pruner}"]
        cfg = compose(run_overrides)
        start = time.perf_counter()
        summary = run_study(cfg, run_overrides, echo=False)
        wall[pruner] = time.perf_counter() - start
        study = optuna.load_study(study_name=summary["study_name"], storage=storage_url(cfg))
        epochs[pruner] = sum(int(t.user_attrs.get("epochs") or 0) for t in study.trials)
        best[pruner] = summary["best_value"]
        pruned[pruner] = int(summary["n_pruned"])
        say(f"pruner={pruner}: {epochs[pruner]} epochs in {wall[pruner]:.1f} s, "
            f"{pruned[pruner]} pruned, best {best[pruner]}")
    saved = 1.0 - epochs["median"] / epochs["none"] if epochs["none"] else None
    return {
        "pruning_saved": saved,
        "details": {"trials": profile.prune_trials, "epochs_unpruned": epochs["none"],
                    "epochs_pruned": epochs["median"], "n_pruned": pruned["median"],
                    "best_unpruned": best["none"], "best_pruned": best["median"],
                    "wall_saved": 1.0 - wall["median"] / wall["none"]},
    }


# ---- resident memory -----------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_sweep(overrides: list[str], early: int, total: int, threads: int) -> dict[str, Any]:
    """In a fresh process: one study run to ``early`` finished trials, then resumed to
    ``total``; peak RSS after each."""
    import torch

    torch.set_num_threads(threads)
    from pipeline.config import compose
    from pipeline.study import run_study

    peaks = []
    for n in (early, total):
        run = [*overrides, f"sweep.n_trials={n}"]
        run_study(compose(run), run, echo=False)
        peaks.append(peak_rss_bytes())
    return {"peak_early": peaks[0], "peak_total": peaks[1]}


def bench_rss(state: Path, profile: Profile) -> dict[str, Any]:
    import torch

    overrides = [*_base(state, profile), *profile.rss_overrides, "sweep.space=default",
                 "sweep.study_name=bench-rss", "sweep.pruner=none"]
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        peaks = pool.submit(_rss_sweep, overrides, profile.rss_early, profile.rss_trials,
                            torch.get_num_threads()).result()
    ratio = peaks["peak_total"] / peaks["peak_early"]
    say(f"peak RSS {peaks['peak_early'] / 2**20:.0f} MiB after trial {profile.rss_early}, "
        f"{peaks['peak_total'] / 2**20:.0f} MiB after trial {profile.rss_trials}")
    return {
        "rss_growth": ratio,
        "details": {"trials": [profile.rss_early, profile.rss_trials],
                    "peak_mib": [peaks["peak_early"] / 2**20, peaks["peak_total"] / 2**20]},
    }


BENCHES: dict[str, Callable[[Path, Profile], dict[str, Any]]] = {
    "bare": bench_bare, "decode": bench_decode, "features": bench_features,
    "pruning": bench_pruning, "rss": bench_rss,
}


def run_bench(profile: Profile, parts: Sequence[str] = PARTS,
              state: Path | None = None) -> dict[str, Any]:
    """Every figure of ``parts`` under ``profile`` (state in a temporary folder unless given)."""
    import torch

    own_state = state is None
    state = Path(tempfile.mkdtemp(prefix="pipeline-bench-")) if state is None else Path(state)
    started = time.perf_counter()
    out: dict[str, Any] = {key: None for key in KEYS}
    out["startup_s"] = None
    details: dict[str, Any] = {}
    try:
        for part in parts:
            say(f"{part} ...")
            begin = time.perf_counter()
            figures = BENCHES[part](state, profile)
            details[part] = {**figures.pop("details", {}),
                             "seconds": round(time.perf_counter() - begin, 1)}
            out.update(figures)
    finally:
        if own_state:
            shutil.rmtree(state, ignore_errors=True)
    out["targets_met"] = {
        key: (out[key] >= bound if op == ">=" else out[key] <= bound)
        for key, (op, bound) in TARGETS.items() if out.get(key) is not None
    }
    out["profile"] = profile.name
    out["threads"] = torch.get_num_threads()
    out["cpu_count"] = os.cpu_count()
    out["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["details"] = details
    return _rounded(out)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, under 10 min on CPU")
    parser.add_argument("--out", type=Path, help="also write the JSON object here")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                        help="measure only these figures")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: 1 with --quick, else torch's own)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile or ("quick" if args.quick else "full")]
    import torch

    threads = args.threads or profile.threads
    if threads:
        torch.set_num_threads(threads)
    say(f"profile {profile.name}, {torch.get_num_threads()} torch threads, parts "
        f"{', '.join(args.only)}")
    begin = time.perf_counter()
    from pipeline.training import Interrupted, graceful_interrupts  # Lightning, MLflow, timm...

    import_s = time.perf_counter() - begin
    try:
        with graceful_interrupts():  # SIGTERM too: the temporary state is removed
            result = run_bench(profile, args.only)
    except (Interrupted, KeyboardInterrupt):
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    result["import_s"] = round(import_s, 2)
    text = json.dumps(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.stdout.flush()
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
