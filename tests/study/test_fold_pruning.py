"""Pruning inside the folds of a cross-validated trial: one that falls out of the kept percentile
stops in the fold where it falls behind, before its last fold; one that keeps up trains every
fold, and its value is the mean of its folds whatever the pruner does."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from pipeline.config import compose
from pipeline.study.fold_pruning import FoldPruner, FoldReports, folds_reached
from pipeline.study.samplers import make_pruner

FOLDS, EPOCHS = 3, 3
# Validation scores per fold and epoch. B leads fold 0 (its best epoch there beats A's) and then
# falls behind in fold 1: Optuna's PercentilePruner, which judges a trial by its best value at
# any step, would let it train every fold.
SCORES = {
    "A": [[0.70, 0.80, 0.85]] * FOLDS,
    "B": [[0.70, 0.88, 0.95], [0.40, 0.45, 0.50], [0.40, 0.45, 0.50]],
    "C": [[0.75, 0.85, 0.90]] * FOLDS,
}


def study_of(trials: list[str], pruner: str = "median"
             ) -> tuple[optuna.Study, dict[int, list[int]]]:
    """A study whose trials are trained on ``SCORES``; trial number -> epochs of each fold."""
    cfg = compose(["sweep.cv_folds=3", f"trainer.max_epochs={EPOCHS}", f"sweep.pruner={pruner}",
                   "sweep.cv_keep_percentile=25", "sweep.pruner_warmup_epochs=1"])
    study = optuna.create_study(direction="maximize", pruner=make_pruner(cfg))
    assert isinstance(study.pruner, FoldPruner) == (pruner != "none")
    trained: dict[int, list[int]] = {}

    def objective(trial: optuna.Trial) -> float:
        scores = SCORES[trials[trial.number]]
        reports = FoldReports(trial, EPOCHS, "val_auroc")
        epochs = trained.setdefault(trial.number, [])
        means = []
        for fold in range(FOLDS):
            epochs.append(0)
            (callback,) = reports.callbacks(fold)
            for epoch, score in enumerate(scores[fold]):
                epochs[-1] += 1
                trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch,
                                          callback_metrics={"val_auroc": score})
                callback.on_validation_end(trainer, None)
            means.append(max(scores[fold]))
            reports.after_fold(fold, sum(means) / len(means))
        return sum(means) / len(means)

    study.optimize(objective, n_trials=len(trials))
    return study, trained


def test_a_trial_that_falls_behind_stops_inside_the_fold_before_its_last():
    study, trained = study_of(["A", "B", "C"])
    a, b, c = study.trials
    assert a.state == c.state == optuna.trial.TrialState.COMPLETE
    assert trained[0] == trained[2] == [EPOCHS] * FOLDS  # every fold, every epoch
    assert a.value == pytest.approx(0.85) and c.value == pytest.approx(0.90)
    assert b.state == optuna.trial.TrialState.PRUNED
    assert trained[1] == [EPOCHS, 2]  # fold 0 whole, fold 1 stopped after its warm-up epoch
    assert folds_reached(b, EPOCHS) == 2 < FOLDS
    assert b.user_attrs["pruned_reason"].startswith("pruned in fold 1 at epoch 1: running mean")
    assert "kept 25% of the 1 complete trials" in b.user_attrs["pruned_reason"]


def test_the_complete_trials_and_their_values_do_not_depend_on_the_pruner():
    """A trial that keeps up trains every fold: the best value is the one with nothing pruned."""
    pruned, _ = study_of(["A", "B", "C"])
    kept, trained = study_of(["A", "B", "C"], pruner="none")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in kept.trials)
    assert trained[1] == [EPOCHS] * FOLDS
    assert pruned.best_value == kept.best_value == pytest.approx(0.90)
