"""Every figure of a profile in one run, and the command line of ``python -m pipeline.bench``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.benchmark.bare import bench_bare
from pipeline.benchmark.caches import bench_decode, bench_features
from pipeline.benchmark.cv import bench_cv
from pipeline.benchmark.gpu import bench_gpu, require_gpu
from pipeline.benchmark.loader import bench_loader
from pipeline.benchmark.naive import bench_naive
from pipeline.benchmark.profiles import GPU_PARTS, KEYS, PARTS, PROFILES, TARGETS, Profile, say
from pipeline.benchmark.scale import bench_scale
from pipeline.benchmark.studies import bench_pruning, bench_rss
from pipeline.config import PipelineError

DOC = """Speed figures, each a ratio measured side by side in one run on this machine:
``python -m pipeline.bench [--quick | --gpu] [--out FILE]``.

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
- ``cv_cost``: wall time of a 5-fold study over a single-split study of the same 12 trials (the
  default space on weights from a file, so frozen stages are cached), each with its pruning.
- ``decode_parallel_speedup``: a cold scan (hash and decode into the cache) of 10,000 PNG and
  JPEG files of 256 px at 224 px in one process over the same scan on every core (the median
  of five blocks of 2,000, each scanned both ways in turn).
- ``warm_scan_ratio``: describe_data's work on those files (in a fresh process, after its
  imports) with the cache warm over the same with the cache cold.
- ``scan_rss_per_10k_images``: MiB of heap (RssAnon, sampled) the cold describe adds per 10,000
  images, over what it adds for a tenth as many; the memory-mapped cache array is not counted.
- ``loader_img_per_s``: training images per second ChestXrayDataModule delivers through
  Lightning (augmentation=light at 224 px, batches of 32) to a model that does nothing.
- ``loader_vs_synthetic``: that rate over the same module's fed random uint8 images in memory.
- ``time_to_naive_best``: the share of a naive study's wall time (Optuna's Lightning example as
  users write it: MLflowCallback, PIL decoding every epoch, no pruning, no caches) that our sweep
  needs to reach the naive study's best value, over the same trials, space and PNG files.

``--gpu`` (one CUDA GPU, under 5 minutes; exits 2 where torch sees none) measures instead:
``gpu_img_per_s`` (DenseNet121 at 224 px through the pipeline's training path, bf16 autocast and
channels_last), ``pipeline_vs_bare`` against a bare loop on the GPU over the same images,
``gpu_utilisation`` while the pipeline trains (pynvml or nvidia-smi, named in the details) and
``loader_img_per_s`` / ``loader_vs_synthetic`` with the loader delivering to the GPU, over
random uint8 batches already on it. Unexercised so far: written without a GPU to run it on.

Medians of repeats where a figure is repeated. ``--quick`` (tiny sizes, models not logged) takes
about 20-25 minutes on a 2-core CPU (``--only`` some parts for less); the full run uses native
sizes. State lives in a temporary folder, removed afterwards. Progress goes to stdout, then each
figure beside its target; the LAST line is the JSON object (``targets``, ``targets_met``), also
written to ``--out``.
"""


BENCHES: dict[str, Callable[[Path, Profile], dict[str, Any]]] = {
    "bare": bench_bare, "decode": bench_decode, "features": bench_features,
    "pruning": bench_pruning, "rss": bench_rss, "cv": bench_cv, "scale": bench_scale,
    "loader": bench_loader, "naive": bench_naive, "gpu": bench_gpu,
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
    not_met: set[str] = set()  # figures a part could not measure because the target was missed
    try:
        for part in parts:
            say(f"{part} ...")
            begin = time.perf_counter()
            figures = BENCHES[part](state, profile)
            not_met.update(figures.pop("not_met", ()))
            details[part] = {**figures.pop("details", {}),
                             "seconds": round(time.perf_counter() - begin, 1)}
            out.update(figures)
    finally:
        if own_state:
            shutil.rmtree(state, ignore_errors=True)
    out["targets_met"] = {
        key: (out[key] >= bound if op == ">=" else out[key] <= bound)
        for key, (op, bound) in TARGETS.items() if out.get(key) is not None
    } | {key: False for key in not_met}
    out["targets"] = {key: f"{op} {bound:g}" for key, (op, bound) in TARGETS.items()}
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


def print_table(result: dict[str, Any]) -> None:
    """Each figure measured (or missed) beside its target, before the JSON line."""
    rows = [key for key in KEYS if result.get(key) is not None or f"{key}_reason" in result]
    say(f"{'figure':<26} {'value':>12}  {'target':<10} met")
    for key in rows:
        value = result.get(key)
        shown = "-" if value is None else f"{value:.4g}"
        target = result["targets"].get(key, "")
        met = {True: "yes", False: "NO", None: "-"}[result["targets_met"].get(key)]
        reason = f"  ({result[f'{key}_reason']})" if f"{key}_reason" in result else ""
        say(f"{key:<26} {shown:>12}  {target:<10} {met}{reason}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 20-25 min on 2 cores")
    parser.add_argument("--out", type=Path, help="also write the JSON object here")
    parser.add_argument("--only", nargs="+", choices=(*PARTS, "gpu"), default=list(PARTS),
                        help="measure only these figures")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: 1 with --quick, else torch's own)")
    parser.add_argument("--gpu", action="store_true",
                        help="the GPU figures on one CUDA GPU, under 5 min (exit 2 without one)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gpu and (args.quick or args.profile):
        parser.error("--gpu has its own sizes: leave --quick and --profile out")
    profile = PROFILES[args.profile or ("gpu" if args.gpu else "quick" if args.quick else "full")]
    if args.gpu and args.only == list(PARTS):
        args.only = list(GPU_PARTS)
    import torch

    if "gpu" in args.only:
        try:
            say(f"GPU: {require_gpu()}")
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2

    threads = args.threads or profile.threads
    if threads:
        torch.set_num_threads(threads)
    say(f"profile {profile.name}, {torch.get_num_threads()} torch threads, parts "
        f"{', '.join(args.only)}")
    begin = time.perf_counter()
    import pipeline.runs.training_run  # noqa: F401 -- Lightning, MLflow, timm: import_s
    from pipeline.training.signals import Interrupted, graceful_interrupts

    import_s = time.perf_counter() - begin
    try:
        with graceful_interrupts():  # SIGTERM too: the temporary state is removed
            result = run_bench(profile, args.only)
    except (Interrupted, KeyboardInterrupt):
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    result["import_s"] = round(import_s, 2)
    print_table(result)
    text = json.dumps(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.stdout.flush()
    print(text, flush=True)
    return 0
