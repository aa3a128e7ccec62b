"""``pruning_saved`` and ``rss_growth``: what the pruner saves, and memory over a long sweep."""

from __future__ import annotations

import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pipeline.benchmark.profiles import Profile, base_overrides, say


def bench_pruning(state: Path, profile: Profile) -> dict[str, Any]:
    import optuna

    from pipeline.config import compose
    from pipeline.runs.context import open_context
    from pipeline.study.loop import run_study
    from pipeline.study.plan import plan_study
    from pipeline.study.storage import storage_url

    # Random sampling (seeded): both studies try the same 12 configurations, so they differ in
    # pruning alone (TPE would steer them apart after the first pruned trial).
    overrides = [*base_overrides(state, profile), *profile.prune_overrides,
                 f"sweep.n_trials={profile.prune_trials}", "sweep.space=default",
                 "sweep.sampler=random"]
    epochs: dict[str, int] = {}
    best: dict[str, float | None] = {}
    wall: dict[str, float] = {}
    pruned: dict[str, int] = {}
    ctx = None
    for pruner in ("none", "median"):
        run_overrides = [*overrides, f"sweep.pruner={pruner}",
                         f"sweep.study_name=bench-prune-{pruner}"]
        cfg = compose(run_overrides)
        start = time.perf_counter()
        plan = plan_study(cfg, run_overrides, echo=False)
        ctx = ctx or open_context(plan.trial_cfg)  # one store, one bundle for both studies
        summary = run_study(ctx, plan, echo=False)
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
    from pipeline.runs.context import open_context
    from pipeline.study.loop import run_study
    from pipeline.study.plan import plan_study

    peaks = []
    ctx = None
    for n in (early, total):
        run = [*overrides, f"sweep.n_trials={n}"]
        plan = plan_study(compose(run), run, echo=False)
        ctx = ctx or open_context(plan.trial_cfg)  # one store, one bundle for the whole sweep
        run_study(ctx, plan, echo=False)
        peaks.append(peak_rss_bytes())
    return {"peak_early": peaks[0], "peak_total": peaks[1]}


def bench_rss(state: Path, profile: Profile) -> dict[str, Any]:
    import torch

    overrides = [*base_overrides(state, profile), *profile.rss_overrides, "sweep.space=default",
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
