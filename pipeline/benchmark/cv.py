"""``cv_cost``: the wall time of a k-fold study over that of a single-split study of the same
trials, each with its pruning (fold-wise for k folds) and the feature cache on. Naive
cross-validation costs k; fold-wise pruning and a feature cache shared by the folds cut it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.benchmark.profiles import Profile, base_overrides, say


def bench_cv(state: Path, profile: Profile) -> dict[str, Any]:
    import optuna
    import timm
    import torch

    from pipeline.config import compose
    from pipeline.runs.context import open_context
    from pipeline.study.loop import run_study
    from pipeline.study.plan import plan_study
    from pipeline.study.storage import storage_url

    # Weights from a file (saved here: none can be downloaded offline), so the default space
    # searches the freeze depth and frozen stages are cached; random sampling, seeded: both
    # studies try the same configurations.
    backbone = compose([*base_overrides(state, profile), *profile.cv_overrides]).backbone
    weights = state / f"{backbone.name}-cv-weights.pt"
    torch.manual_seed(0)
    torch.save(timm.create_model(str(backbone.timm_name)).state_dict(), weights)
    overrides = [*base_overrides(state, profile), *profile.cv_overrides,
                 f"backbone.weights_path={weights}", f"sweep.n_trials={profile.cv_trials}",
                 "sweep.space=default", "sweep.sampler=random", "sweep.pruner=median",
                 "trainer.feature_cache=auto"]
    wall: dict[int, float] = {}
    best: dict[int, float | None] = {}
    fits: dict[int, int] = {}
    epochs: dict[int, int] = {}  # epochs trained, all folds: the cost without the machine's load
    ctx = None
    for folds in (1, profile.cv_folds):
        run = [*overrides, f"sweep.cv_folds={folds}", f"sweep.study_name=bench-cv-{folds}"]
        cfg = compose(run)
        start = time.perf_counter()
        plan = plan_study(cfg, run, echo=False)
        ctx = ctx or open_context(plan.trial_cfg)  # one store, one bundle for both studies
        summary = run_study(ctx, plan, echo=False)
        wall[folds] = time.perf_counter() - start
        best[folds] = summary["best_value"]
        study = optuna.load_study(study_name=summary["study_name"], storage=storage_url(cfg))
        fits[folds] = sum(_folds_trained(t, int(cfg.trainer.max_epochs), folds)
                          for t in study.trials)
        epochs[folds] = sum(int(t.user_attrs.get("epochs", 0)) for t in study.trials)
        say(f"cv_folds={folds}: {wall[folds]:.1f} s, {fits[folds]} fits, "
            f"{summary['n_pruned']} pruned, best {best[folds]}")
    k = profile.cv_folds
    return {
        "cv_cost": wall[k] / wall[1],
        "details": {"folds": k, "trials": profile.cv_trials, "single_s": wall[1],
                    "cv_s": wall[k], "fits_single": fits[1], "fits_cv": fits[k],
                    "epochs_single": epochs[1], "epochs_cv": epochs[k],
                    "naive_cost": float(k), "best_single": best[1], "best_cv": best[k]},
    }


def _folds_trained(trial: Any, max_epochs: int, folds: int) -> int:
    """Folds a trial trained: all of a complete one, a pruned one's up to its last report."""
    if folds == 1 or trial.state.name == "COMPLETE":
        return folds
    last = max(trial.intermediate_values, default=-1)
    return 1 + max(0, last - max_epochs) if last >= max_epochs else 1
