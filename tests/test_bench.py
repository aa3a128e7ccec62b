"""The benchmark's plumbing on seconds-long sizes: every figure comes back, positive, in one JSON
object that is also the last line (the figures themselves are meaningless at these sizes)."""

from __future__ import annotations

import json

import pytest

from pipeline import bench

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(capsys, tmp_path, parts: list[str]) -> dict:
    out = tmp_path / "bench.json"
    assert bench.main(["--profile", "smoke", "--out", str(out), "--only", *parts]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert json.loads(out.read_text()) == result
    assert set(bench.KEYS) <= set(result) and "startup_s" in result
    return result


def test_bench_reports_speed_figures_as_a_json_last_line(capsys, tmp_path):
    result = _run(capsys, tmp_path, ["bare", "decode", "features"])
    assert result["pipeline_vs_bare"] > 0 and result["startup_s"] > 0
    if result["decode_cache_speedup"] is None:  # ../shared is not there
        assert result["decode_cache_speedup_reason"]
    else:
        assert result["decode_cache_speedup"] > 0
    assert result["feature_cache_speedup"] > 0
    features = result["details"]["features"]
    assert features["equal_best"] and features["max_trial_difference"] <= 1e-6
    assert result["pruning_saved"] is None and result["rss_growth"] is None


@pytest.mark.slow
def test_bench_pruning_and_memory_figures(capsys, tmp_path):
    result = _run(capsys, tmp_path, ["pruning", "rss"])
    assert 0 <= result["pruning_saved"] < 1
    assert result["rss_growth"] > 0
    assert result["details"]["pruning"]["best_unpruned"] is not None
