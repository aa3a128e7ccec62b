"""The benchmark's plumbing on seconds-long sizes: every figure comes back, positive, in one JSON
object that is also the last line (the figures themselves are meaningless at these sizes)."""

from __future__ import annotations

import json

import pytest

from pipeline import benchmark as bench

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(capsys, tmp_path, parts: list[str]) -> dict:
    out = tmp_path / "bench.json"
    assert bench.main(["--profile", "smoke", "--out", str(out), "--only", *parts]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert json.loads(out.read_text()) == result
    assert set(bench.KEYS) <= set(result) and "startup_s" in result
    return result


def _ratio(a: float, b: float) -> float:
    """a / b, as far as the JSON's 4-decimal rounding of a and b lets it be known."""
    return pytest.approx(a / b, rel=1e-3 + 1e-4 / abs(a) + 1e-4 / abs(b))


def _targets_agree(result: dict) -> None:
    """Every figure measured has its target verdict, and the verdict is the figure's."""
    for key, (op, bound) in bench.TARGETS.items():
        if result.get(key) is None:
            assert key not in result["targets_met"]
        else:
            assert result["targets_met"][key] == (
                result[key] >= bound if op == ">=" else result[key] <= bound)


@pytest.mark.slow
def test_bench_reports_speed_figures_as_a_json_last_line(capsys, tmp_path):
    result = _run(capsys, tmp_path, ["bare", "decode", "features"])
    bare = result["details"]["bare"]
    # The ratio is the median of the epoch-by-epoch ratios, each pipeline over bare.
    ratios = sorted(bare["epoch_ratios"])
    assert len(ratios) >= 1 and result["pipeline_vs_bare"] == pytest.approx(
        ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:
                                                                    len(ratios) // 2 + 1]) / 2,
        abs=1e-4)
    assert 0 < result["startup_s"] < result["seconds"]
    if result["decode_cache_speedup"] is None:  # ../shared is not there
        assert "is not there" in result["decode_cache_speedup_reason"]
    else:
        decode = result["details"]["decode"]
        assert result["decode_cache_speedup"] == _ratio(decode["decode_epoch_s"],
                                                        decode["cached_epoch_s"])
    features = result["details"]["features"]
    assert result["feature_cache_speedup"] == _ratio(features["uncached_s"], features["cached_s"])
    assert features["trials"] == bench.PROFILES["smoke"].feature_trials
    assert features["equal_best"] and features["max_trial_difference"] <= 1e-6
    assert result["pruning_saved"] is None and result["rss_growth"] is None
    assert result["cv_cost"] is None
    _targets_agree(result)


@pytest.mark.slow
def test_bench_pruning_and_memory_figures(capsys, tmp_path):
    result = _run(capsys, tmp_path, ["pruning", "rss", "cv"])
    pruning = result["details"]["pruning"]
    assert pruning["epochs_pruned"] <= pruning["epochs_unpruned"]
    assert result["pruning_saved"] == pytest.approx(
        1 - pruning["epochs_pruned"] / pruning["epochs_unpruned"], abs=1e-4)
    assert pruning["best_unpruned"] is not None and pruning["best_pruned"] is not None
    rss = result["details"]["rss"]
    assert result["rss_growth"] == _ratio(rss["peak_mib"][1], rss["peak_mib"][0])
    cv = result["details"]["cv"]
    assert result["cv_cost"] == _ratio(cv["cv_s"], cv["single_s"])
    assert cv["fits_single"] == cv["trials"] and cv["trials"] <= cv["fits_cv"] <= (
        cv["trials"] * cv["folds"])
    # Both floors count a part of what the k-fold study trained.
    ratio = cv["epochs_cv"] / cv["epochs_single"]
    assert 0 < cv["epochs_floor_leaders"] <= ratio + 1e-4
    assert 0 < cv["epochs_floor_oracle"] <= ratio + 1e-4
    _targets_agree(result)


@pytest.mark.slow
def test_bench_scan_and_loader_figures(capsys, tmp_path):
    result = _run(capsys, tmp_path, ["scale", "loader"])
    scale = result["details"]["scale"]
    assert scale["images"] == bench.PROFILES["smoke"].scale_images and scale["skipped"] == 0
    assert scale["duplicate_groups"] == 0  # every generated file is its own radiograph
    assert result["decode_parallel_speedup"] == _ratio(scale["decode_one_s"],
                                                       scale["decode_parallel_s"])  # one block
    assert scale["decode_block_ratios"] == [result["decode_parallel_speedup"]]
    assert result["warm_scan_ratio"] == _ratio(scale["warm_s"], scale["cold_s"])
    assert result["scan_rss_per_10k_images"] == pytest.approx(
        (scale["rss_growth_mib"] - scale["small_rss_growth_mib"]) * 10_000
        / (scale["images"] - scale["small_images"]), abs=0.01)
    assert 0 < scale["map_mib"] < scale["peak_rss_mib"]
    loader = result["details"]["loader"]
    assert result["loader_img_per_s"] == pytest.approx(
        sorted(loader["real_img_per_s"])[len(loader["real_img_per_s"]) // 2], abs=1e-3)
    assert result["loader_img_per_s"] > 0 and loader["image_size"] == 64
    assert result["loader_vs_synthetic"] == pytest.approx(
        sorted(loader["ratios"])[len(loader["ratios"]) // 2], abs=1e-3)
    assert result["pipeline_vs_bare"] is None and result["cv_cost"] is None
    _targets_agree(result)
