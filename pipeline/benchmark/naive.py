"""``time_to_naive_best``: the share of a naive Optuna + Lightning + MLflowCallback study's wall
time (benchmark.naive_peer) that our sweep needs to reach the naive study's best value.

Both search the same space (sweeps/default.yaml, as the pipeline narrows it for random weights)
with the same number of trials, epochs per trial (its fixed max_epochs), backbone, image size,
torch threads and files: generated radiographs written once as PNG files in the
``{train,val,test}/<class>/`` layout, so both train on the same training images and score
the same validation images. Our sweep is timed from its start (store, cold scan of the files, plan)
to the completion of its first trial whose best-so-far value reaches the naive best; the naive
study from its first trial to its last. Ours runs first (the naive study then searches the space
as ours did); the files were just written, so they are equally warm in the page cache for both.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.benchmark.naive_peer import run_naive
from pipeline.benchmark.profiles import Profile, base_overrides, say


def write_split_collection(root: Path, count: int, size: int, seed: int = 0) -> Path:
    """``count`` generated radiographs of ``size`` px as PNG files under
    ``root/{train,val,test}/<class>/``: patients 3 in 5 to train, 1 in 5 each to val and test,
    dated a day back (as unpacked files are). Returns ``root``."""
    from PIL import Image

    from pipeline.data import synthetic

    data = synthetic.generate(count, size, num_classes=3, seed=seed)
    past = time.time() - 86400
    for i, (pixels, label, patient) in enumerate(zip(data.images, data.labels, data.patients,
                                                     strict=True)):
        number = int(str(patient).lstrip("p"))
        split = ("val", "test", "train", "train", "train")[number % 5]
        folder = root / split / data.class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"person{number}_{i:05d}.png"
        Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path, compress_level=1)
        os.utime(path, (past, past))
    return root


def time_to_reach(completed: list[tuple[float, float]], target: float
                  ) -> tuple[float | None, float | None]:
    """(seconds, best): when the best-so-far value of trials completed at (seconds, value) first
    reaches ``target`` (None: never), and the best value of all of them (None: none)."""
    reached, best = None, None
    for seconds, value in sorted(completed):
        best = value if best is None else max(best, value)
        if reached is None and best >= target:
            reached = seconds
    return reached, best


def bench_naive(state: Path, profile: Profile) -> dict[str, Any]:
    import optuna
    import torch

    from pipeline.config import compose
    from pipeline.runs.context import open_context
    from pipeline.study.loop import run_study
    from pipeline.study.plan import plan_study
    from pipeline.study.storage import storage_url

    root = write_split_collection(state / "naive-images", profile.naive_images,
                                  profile.naive_size)
    overrides = [*base_overrides(state / "ours", profile), "dataset=imagefolder",
                 f"dataset.root={root}", f"dataset.image_size={profile.naive_size}",
                 f"backbone={profile.naive_backbone}", "backbone.pretrained=false",
                 f"sweep.n_trials={profile.naive_trials}",
                 "sweep.study_name=bench-ours", *profile.naive_overrides]
    cfg = compose(overrides)
    started = dt.datetime.now()
    begin = time.perf_counter()
    plan = plan_study(cfg, overrides, echo=False)
    ctx = open_context(plan.trial_cfg)
    summary = run_study(ctx, plan, echo=False)
    ours_s = time.perf_counter() - begin
    # The naive study searches the space as our sweep did (narrowed for random weights).
    epochs = int(plan.trial_cfg.trainer.max_epochs)  # the space's fixed budget
    say(f"naive: {profile.naive_trials} trials of {profile.naive_backbone} at "
        f"{profile.naive_size} px, {epochs} epochs each, space {sorted(plan.space.params)}")
    naive = run_naive(root, state / "naive", profile.naive_backbone, plan.space.params, epochs,
                      profile.naive_trials, int(cfg.seed), metric=str(cfg.trainer.monitor))
    say(f"naive: {naive['wall_s']:.1f} s, best {naive['best']:.4f}")
    study = optuna.load_study(study_name=summary["study_name"], storage=storage_url(cfg))
    # Complete trials only: a pruned trial carries its last epoch's value, but no sweep reports
    # it as a result.
    done = [((t.datetime_complete - started).total_seconds(), float(t.value))
            for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    reached, best = time_to_reach(done, naive["best"])
    say(f"ours: {ours_s:.1f} s, {summary['n_pruned']} pruned, best {best}, reached the naive "
        f"best after {'never' if reached is None else f'{reached:.1f} s'}")
    train = sum(1 for _ in (root / "train").rglob("*.png"))
    out: dict[str, Any] = {
        "time_to_naive_best": None if reached is None else reached / naive["wall_s"],
        "details": {"trials": profile.naive_trials, "backbone": profile.naive_backbone,
                    "image_size": profile.naive_size, "images": profile.naive_images,
                    "train_images": train, "epochs_per_trial": epochs,
                    "space": sorted(plan.space.params), "threads": torch.get_num_threads(),
                    "naive_s": naive["wall_s"], "naive_best": naive["best"],
                    "naive_completed": naive["completed"], "ours_s": ours_s, "ours_best": best,
                    "ours_reached_s": reached, "ours_pruned": int(summary["n_pruned"]),
                    "ours_completed": sorted(done)},
    }
    if reached is None:
        out["time_to_naive_best_reason"] = (
            f"not met: our sweep's best {best} never reached the naive best {naive['best']:.4f} "
            f"in {profile.naive_trials} trials")
        out["not_met"] = ["time_to_naive_best"]
    return out
