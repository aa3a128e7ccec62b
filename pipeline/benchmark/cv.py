"""``cv_cost``: the wall time of a k-fold study over that of a single-split study of the same
trials, each with its pruning (fold-wise for k folds) and the feature cache on. Naive
cross-validation costs k; fold-wise pruning and a feature cache shared by the folds cut it.

Beside it, in epochs trained over the single split's, two floors read off the k-fold study: what
any pruning rule that never stops a trial while its running mean leads the best complete value
must train (the first fold of every trial, all folds of those leaders), and what an oracle that
knew every trial's final value would (the first fold of every trial, all folds of the best)."""

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
    floors: dict[str, float] = {}
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
        # The trials' epoch budget is the space's (plan.trial_cfg), not the command's.
        first_step = int(plan.trial_cfg.trainer.max_epochs)
        fits[folds] = sum(_folds_trained(t, first_step, folds) for t in study.trials)
        epochs[folds] = sum(int(t.user_attrs.get("epochs", 0)) for t in study.trials)
        if folds > 1:
            floors = _epoch_floors(study, first_step, folds)
        say(f"cv_folds={folds}: {wall[folds]:.1f} s, {fits[folds]} fits, "
            f"{summary['n_pruned']} pruned, best {best[folds]}")
    k = profile.cv_folds
    say(f"epochs over the single split's: {epochs[k] / epochs[1]:.2f}; floor of a rule that "
        f"keeps every leader {floors['leaders'] / epochs[1]:.2f}, of an oracle "
        f"{floors['oracle'] / epochs[1]:.2f}")
    return {
        "cv_cost": wall[k] / wall[1],
        "details": {"folds": k, "trials": profile.cv_trials, "single_s": wall[1],
                    "cv_s": wall[k], "fits_single": fits[1], "fits_cv": fits[k],
                    "epochs_single": epochs[1], "epochs_cv": epochs[k],
                    "epochs_floor_leaders": floors["leaders"] / epochs[1],
                    "epochs_floor_oracle": floors["oracle"] / epochs[1],
                    "naive_cost": float(k), "best_single": best[1], "best_cv": best[k]},
    }


def _folds_trained(trial: Any, max_epochs: int, folds: int) -> int:
    """Folds a trial trained: all of a complete one, a pruned one's up to its last report."""
    if folds == 1 or trial.state.name == "COMPLETE":
        return folds
    last = max(trial.intermediate_values, default=-1)
    return 1 + max(0, last - max_epochs) if last >= max_epochs else 1


def _epoch_floors(study: Any, first_step: int, folds: int) -> dict[str, float]:
    """Epochs a k-fold study must train under two kinds of fold pruning (the module's doc).

    A trial's first-fold epochs are its reports below ``first_step`` (one per validated
    epoch), its later folds' the rest of its ``epochs``; the trials ran one after another, so
    "the best complete value" at a trial is that of the complete trials numbered before it.
    The running mean after the last fold saves nothing: a leader is judged before it."""
    sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
    first = leaders = later_of_best = 0
    best: float | None = None
    for trial in sorted(study.trials, key=lambda t: t.number):
        steps = trial.intermediate_values
        head = sum(1 for s in steps if s < first_step)
        later = int(trial.user_attrs.get("epochs", 0)) - head
        first += head
        if best is None or all(sign * v >= sign * best for s, v in steps.items()
                               if first_step <= s < first_step + folds - 1):
            leaders += later
        if trial.state.name == "COMPLETE" and trial.value is not None and (
                best is None or sign * trial.value > sign * best):
            best, later_of_best = trial.value, later
    return {"leaders": float(first + leaders), "oracle": float(first + later_of_best)}
