"""``decode_parallel_speedup``, ``warm_scan_ratio``, ``scan_rss_per_10k_images``: a collection of
real encoded files (benchmark.collection) scanned cold and warm, on every core and on one."""

from __future__ import annotations

import contextlib
import io
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pipeline.benchmark.collection import write_collection
from pipeline.benchmark.profiles import Profile, base_overrides, median, say

_SAMPLE_S = 0.005  # resident-memory sampling period


def bench_scale(state: Path, profile: Profile) -> dict[str, Any]:
    from pipeline.data.decode_pool import decode_workers

    begin = time.perf_counter()
    images, small = profile.scale_images, max(150, profile.scale_images // 10)  # 150: splittable
    root = write_collection(state / "collection", images, profile.scale_source)
    small_root = write_collection(state / "small", small, profile.scale_source, seed=1)
    say(f"wrote {images} + {small} PNG/JPEG files of {profile.scale_source} px in "
        f"{time.perf_counter() - begin:.1f} s")
    scan = _in_fresh_process(state / "scan", root, profile)
    fixed = _in_fresh_process(state / "scan-small", small_root, profile)
    # Memory that grows with the collection: the large scan's over the small one's, so the
    # one-off costs of a first scan in a process (torch's first operation, say) drop out.
    per_10k = (scan["rss_growth_mib"] - fixed["rss_growth_mib"]) * 10_000 / (images - small)
    say(f"describe: cold {scan['cold_s']:.2f} s, warm {scan['warm_s']:.3f} s; heap "
        f"{scan['rss_growth_mib']:.0f} MiB ({fixed['rss_growth_mib']:.0f} MiB for {small} "
        f"images) beside the {scan['map_mib']:.0f} MiB cache map")

    from pipeline.data.decode_cache import decode_files

    paths = sorted(p for p in root.rglob("*") if p.is_file())
    workers = decode_workers("auto")
    # Block by block, one process and all cores alternately (each into an empty cache), so a
    # burst of load from other processes falls on both alike; the median of the blocks' ratios.
    seconds: dict[int, list[float]] = {1: [], workers: []}
    for b in range(profile.scale_blocks):
        block = paths[b :: profile.scale_blocks]
        for n in sorted(seconds, reverse=bool(b % 2)):
            start = time.perf_counter()
            decoded = decode_files(block, root, profile.scale_size, state / f"decode-{n}-{b}", n)
            seconds[n].append(time.perf_counter() - start)
            assert decoded.decoded == len(block), "the decode bench decoded from a warm cache"
    ratios = [one / par for one, par in zip(seconds[1], seconds[workers], strict=True)]
    say(f"cold decode of {len(paths)} files: {sum(seconds[1]):.2f} s in one process, "
        f"{sum(seconds[workers]):.2f} s in {workers} (block ratios "
        f"{', '.join(f'{r:.2f}' for r in ratios)})")
    return {
        "decode_parallel_speedup": median(ratios),
        "warm_scan_ratio": scan["warm_s"] / scan["cold_s"],
        "scan_rss_per_10k_images": per_10k,
        "details": {"images": images, "image_size": profile.scale_size,
                    "source_size": profile.scale_source, "workers": workers,
                    "decode_one_s": sum(seconds[1]), "decode_parallel_s": sum(seconds[workers]),
                    "decode_block_ratios": ratios,
                    "decode_images_per_s": images / sum(seconds[workers]), **scan,
                    "small_images": small, "small_rss_growth_mib": fixed["rss_growth_mib"]},
    }


def _in_fresh_process(state: Path, root: Path, profile: Profile) -> dict[str, Any]:
    """A fresh process: its peak memory is the scan's alone."""
    import torch

    overrides = [*base_overrides(state, profile), "dataset=imagefolder", f"dataset.root={root}",
                 f"dataset.image_size={profile.scale_size}"]
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_describe_cold_and_warm, overrides, torch.get_num_threads()).result()


def _describe_cold_and_warm(overrides: list[str], threads: int) -> dict[str, Any]:
    """describe_data's work (scan, decode, duplicates, split, summary, the printed description)
    on a cold cache, then again on the warm one; the peak of anonymous memory (the heap:
    file-backed pages of the cache map are the map's) above its level before the scan."""
    import torch

    torch.set_num_threads(threads)
    from pipeline.config import compose

    compose(overrides)  # Hydra's one-off start, outside both timings
    baseline = _rss_kib()["RssAnon"]
    with _PeakSampler() as peak:
        cold_s, bundle = _timed_describe(overrides)
    hwm = _rss_kib()["VmHWM"]
    warm_s, again = _timed_describe(overrides)
    assert again.fingerprint == bundle.fingerprint
    return {"cold_s": cold_s, "warm_s": warm_s, "rss_growth_mib": (peak.value - baseline) / 1024,
            "map_mib": bundle.images.nbytes / 2**20, "peak_rss_mib": hwm / 1024,
            "duplicate_groups": len(bundle.duplicates), "skipped": len(bundle.skipped)}


def _timed_describe(overrides: list[str]):
    from pipeline.config import compose
    from pipeline.config import state_dir as resolve_state_dir
    from pipeline.data.bundle import build_bundle
    from pipeline.data.report import print_description

    start = time.perf_counter()
    cfg = compose(overrides)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        bundle = build_bundle(cfg.dataset, resolve_state_dir(cfg))
        print_description(bundle, bundle.summary())
    return time.perf_counter() - start, bundle


def _rss_kib() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class _PeakSampler:
    """The largest RssAnon seen while the block runs (the kernel keeps no peak of it alone)."""

    def __init__(self) -> None:
        self.value = _rss_kib()["RssAnon"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_S):
            self.value = max(self.value, _rss_kib()["RssAnon"])

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.value = max(self.value, _rss_kib()["RssAnon"])
