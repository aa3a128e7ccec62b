"""`python -m pipeline.bench --gpu` where there is no GPU (this machine), and the sampler's
arithmetic. The GPU path itself has never run here: see README, Speed."""

from __future__ import annotations

import pytest
import torch

from pipeline import benchmark as bench
from pipeline.benchmark.gpu import UtilisationSampler


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_gpu_exits_2_with_one_line_where_there_is_no_gpu(capsys):
    assert bench.main(["--gpu"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --gpu: torch sees no CUDA GPU")
    assert "{" not in captured.out  # no JSON line: nothing was measured


def test_bench_gpu_refuses_the_cpu_sizes():
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--gpu", "--quick"])
    assert exit_.value.code == 2


def test_gpu_utilisation_is_the_mean_of_the_samples_inside_the_spans():
    sampler = UtilisationSampler()
    sampler.samples = [(0.5, 0.2), (1.5, 0.9), (2.5, 1.0), (3.5, 0.1), (4.5, 0.7)]
    assert sampler.mean_over([(1.0, 3.0), (4.0, 5.0)]) == pytest.approx((0.9 + 1.0 + 0.7) / 3)
    assert sampler.mean_over([(10.0, 11.0)]) is None


def test_gpu_profile_is_densenet121_at_224_px():
    gpu = bench.PROFILES["gpu"]
    assert {"backbone=densenet121", "dataset.image_size=224"} <= set(gpu.bare_overrides)
    assert gpu.loader_size == 224 and bench.TARGETS["gpu_utilisation"] == (">=", 0.9)


@pytest.mark.slow
def test_bench_gpu_plumbing_runs_on_the_cpu_at_smoke_sizes(capsys, monkeypatch, one_torch_thread):
    """Everything of the GPU part but CUDA itself: the files written, both loops timed epoch by
    epoch, the figures and their targets; no sampler works here, and the JSON says why."""
    import json

    from pipeline.benchmark import gpu, runner

    monkeypatch.setattr(gpu, "require_gpu", lambda: "no GPU (test)")
    monkeypatch.setattr(runner, "require_gpu", lambda: "no GPU (test)")
    assert bench.main(["--profile", "smoke", "--only", "gpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    details = result["details"]["gpu"]
    assert result["gpu_img_per_s"] == pytest.approx(details["pipeline_images_per_s"], abs=1e-3)
    assert result["pipeline_vs_bare"] > 0 and details["images"] == 60
    assert result["gpu_utilisation"] is None and "nvidia-smi" in result["gpu_utilisation_reason"]
    assert result["targets_met"]["gpu_img_per_s"] == (result["gpu_img_per_s"] >= 914)
