"""``python -m pipeline.bench --gpu``: DenseNet121 at 224 px on one GPU, the pipeline's training
path (bf16 autocast, channels_last) against a bare loop on the same images, the GPU's use while
the pipeline trains, and the loader on the GPU path. Sized to finish in under 5 minutes.

Written without a GPU to run it on: no figure here has been measured yet (README, Speed).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.benchmark.bare import bench_bare
from pipeline.benchmark.collection import write_collection
from pipeline.benchmark.profiles import Profile, median, say
from pipeline.config import PipelineError


def require_gpu() -> str:
    """The GPU's name; a PipelineError (one line, exit 2) where torch sees none."""
    import torch

    if not torch.cuda.is_available():
        raise PipelineError("--gpu: torch sees no CUDA GPU on this machine (torch "
                            f"{torch.__version__}, CUDA build {torch.version.cuda}); run it on a "
                            "machine with one, or leave --gpu out for the CPU figures")
    return torch.cuda.get_device_name(0)


class UtilisationSampler:
    """Samples the GPU's utilisation (the share of time a kernel ran) every ``period`` seconds in
    a thread, stamped with perf_counter: from ``torch.cuda.utilization()`` where pynvml is
    installed, else from ``nvidia-smi``; ``source`` says which (None: neither works)."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.samples: list[tuple[float, float]] = []  # (perf_counter, utilisation in [0, 1])
        self.source = self._source()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _source(self) -> str | None:
        import torch

        try:
            torch.cuda.utilization()
            return "torch.cuda.utilization (pynvml)"
        except Exception:  # noqa: BLE001 -- pynvml missing or NVML refusing: try nvidia-smi
            pass
        return "nvidia-smi" if shutil.which("nvidia-smi") and self._smi() is not None else None

    def _smi(self) -> float | None:
        index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        try:
            out = subprocess.run(["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True,
                                 text=True, timeout=5, check=True).stdout
            return float(out.strip().splitlines()[0]) / 100
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def _read(self) -> float | None:
        import torch

        if self.source == "nvidia-smi":
            return self._smi()
        return torch.cuda.utilization() / 100

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            value = self._read()
            if value is not None:
                self.samples.append((time.perf_counter(), value))

    def __enter__(self) -> UtilisationSampler:
        if self.source is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def mean_over(self, spans: list[tuple[float, float]]) -> float | None:
        """Mean utilisation of the samples taken inside ``spans`` (None: none was)."""
        inside = [v for t, v in self.samples if any(a <= t <= b for a, b in spans)]
        return sum(inside) / len(inside) if inside else None


def bench_gpu(state: Path, profile: Profile) -> dict[str, Any]:
    """``gpu_img_per_s``, ``pipeline_vs_bare`` and ``gpu_utilisation`` on the GPU: benchmark.bare
    (both loops on the GPU there) over a collection of real PNG/JPEG files at 224 px."""
    name = require_gpu()
    say("the --gpu path was written and tested on a machine without a GPU: until README (Speed, "
        "On a GPU) quotes figures, this is its first run; check its numbers")
    root = write_collection(state / "gpu-images", profile.gpu_images, profile.scale_source)
    # The files' count is gpu_images; random weights, as the bare loop's (offline machines too).
    sizes = tuple(o for o in profile.bare_overrides if not o.startswith("dataset.num_images="))
    sized = dataclasses.replace(profile, bare_overrides=(
        "dataset=imagefolder", f"dataset.root={root}", "backbone.pretrained=false", *sizes))
    spans: dict[str, list[tuple[float, float]]] = {}
    (state / "gpu").mkdir(parents=True, exist_ok=True)  # the run's store
    with UtilisationSampler() as sampler:
        figures = bench_bare(state / "gpu", sized, spans=spans)
    details = figures.pop("details")
    used = sampler.mean_over(spans.get("pipeline", []))
    bare_used = sampler.mean_over(spans.get("bare", []))
    say(f"{name}: pipeline {details['pipeline_images_per_s']:.0f} img/s, bare "
        f"{details['bare_images_per_s']:.0f} img/s, GPU used {used} of the pipeline's epochs "
        f"({sampler.source or 'no sampler'})")
    out: dict[str, Any] = {
        **figures,
        "gpu_img_per_s": details["pipeline_images_per_s"],
        "gpu_utilisation": used,
        "details": {**details, "gpu": name, "images": profile.gpu_images,
                    "utilisation_source": sampler.source, "bare_utilisation": bare_used,
                    "utilisation_samples": len(sampler.samples),
                    "utilisation_median": median([v for _, v in sampler.samples] or [0.0])},
    }
    if sampler.source is None:
        out["gpu_utilisation_reason"] = "neither pynvml (torch.cuda.utilization) nor nvidia-smi"
    return out
