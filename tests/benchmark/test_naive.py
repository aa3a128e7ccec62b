"""``time_to_naive_best``: when our sweep's best-so-far first reaches the naive study's best, and
the naive profile run end to end on seconds-long sizes (slow: two studies and two MLflow stores)."""

from __future__ import annotations

import json

import pytest

from pipeline import benchmark as bench
from pipeline.benchmark.naive import time_to_reach

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_time_to_reach_is_the_first_completion_whose_best_so_far_reaches_the_target():
    completed = [(30.0, 0.70), (10.0, 0.60), (50.0, 0.65), (40.0, 0.81), (20.0, 0.50)]
    assert time_to_reach(completed, 0.80) == (40.0, 0.81)
    assert time_to_reach(completed, 0.70) == (30.0, 0.81)
    assert time_to_reach(completed, 0.90) == (None, 0.81)  # never reached
    assert time_to_reach([], 0.5) == (None, None)


@pytest.mark.slow
def test_bench_naive_profile_reports_time_to_naive_best_beside_its_target(capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--profile", "smoke", "--out", str(out), "--only", "naive"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    result = json.loads(printed[-1])
    assert json.loads(out.read_text()) == result
    naive = result["details"]["naive"]
    smoke = bench.PROFILES["smoke"]
    assert naive["trials"] == smoke.naive_trials and naive["epochs_per_trial"] == 1
    assert len(naive["naive_completed"]) == smoke.naive_trials
    assert naive["space"] == ["dataset.batch_size", "optimizer.lr"]
    assert result["targets"]["time_to_naive_best"] == "<= 0.25"
    reached, best = time_to_reach([tuple(c) for c in naive["ours_completed"]],
                                  naive["naive_best"])
    assert best == pytest.approx(naive["ours_best"], abs=1e-4)
    row = next(line for line in printed if line.startswith("[bench] time_to_naive_best"))
    assert "<= 0.25" in row
    if reached is None:  # not met, said plainly
        assert result["time_to_naive_best"] is None
        assert result["time_to_naive_best_reason"].startswith("not met")
        assert result["targets_met"]["time_to_naive_best"] is False and "NO" in row
    else:
        assert result["time_to_naive_best"] == pytest.approx(
            reached / naive["naive_s"], rel=1e-3)
        assert result["targets_met"]["time_to_naive_best"] == (
            result["time_to_naive_best"] <= 0.25)
