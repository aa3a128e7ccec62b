"""Pruning a cross-validated trial inside its folds, not only between them.

Every fold's epochs are reported, not only the first fold's: fold f's epoch e goes to Optuna at
step ``f * (max_epochs + 1) + e`` as the running mean the trial would have if fold f ended now
(the folds done and this epoch's score), and the fold's end at ``f * (max_epochs + 1) +
max_epochs`` as the running mean of the folds done. A trial goes on only while the best of
these so far in the current fold is in the kept percentile of the complete trials' same value at
the same step (a complete trial that stopped the fold early keeps its best). A trial that cannot
keep up stops in the fold where it falls behind instead of training it to the end, which is what
the cost of cross-validation is made of: the complete trials train every fold either way, and
their values do not depend on the pruner.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


def fold_step(fold: int, epoch: int, max_epochs: int) -> int:
    """The step of fold ``fold``'s epoch ``epoch`` (``epoch == max_epochs``: the fold's end)."""
    return fold * (max_epochs + 1) + epoch


def folds_reached(trial: FrozenTrial, max_epochs: int) -> int:
    """Folds a trial started: the fold of its last report, plus one (0 without a report)."""
    last = trial.last_step
    return 0 if last is None else last // (max_epochs + 1) + 1


class FoldPruner(optuna.pruners.BasePruner):
    """A cross-validated study's pruner: the first fold's epochs by the sweep's own pruner as a
    single split's, and every step of every fold by the kept percentile (module docstring).
    Optuna's WilcoxonPruner cannot reject with five paired folds before the last one, and its
    PercentilePruner judges a trial by its best value at any step, a noisy epoch of the first
    fold included, which lets most trials train every fold."""

    def __init__(self, epochs: optuna.pruners.BasePruner, max_epochs: int, keep: float,
                 warmup: int = 0):
        self.epochs = epochs
        self.max_epochs = max_epochs
        self.keep = keep
        self.warmup = warmup
        self.reasons: dict[int, str] = {}  # trial number -> why it was pruned

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        fold, epoch = divmod(step, self.max_epochs + 1)
        end = epoch == self.max_epochs
        if fold == 0 and not end and self.epochs.prune(study, trial):
            self.reasons[trial.number] = (f"pruned in fold 0 at epoch {epoch} by the sweep's "
                                          f"{type(self.epochs).__name__}")
            return True
        if not end and epoch < self.warmup:
            return False
        maximize = study.direction == StudyDirection.MAXIMIZE
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        theirs = [v for t in complete if (v := self.so_far(t, fold, step, maximize)) is not None]
        mine = self.so_far(trial, fold, step, maximize)
        if not theirs or mine is None:
            return False
        bar = float(np.percentile(theirs, 100.0 - self.keep if maximize else self.keep))
        if not (mine < bar if maximize else mine > bar):
            return False
        where = f"after fold {fold}" if end else f"in fold {fold} at epoch {epoch}"
        self.reasons[trial.number] = (
            f"pruned {where}: running mean {mine:.4f} outside the kept {self.keep:g}% of the "
            f"{len(theirs)} complete trials (bar {bar:.4f})")
        return True

    def so_far(self, trial: FrozenTrial, fold: int, step: int, maximize: bool) -> float | None:
        """A trial's value at ``step`` of ``fold``: the fold's end as reported, an epoch step as
        the best of the fold's epochs up to it."""
        values = trial.intermediate_values
        if step % (self.max_epochs + 1) == self.max_epochs:
            return values.get(step)
        first = fold_step(fold, 0, self.max_epochs)
        seen = [v for s, v in values.items() if first <= s <= step and np.isfinite(v)]
        if not seen:
            return None
        return float(max(seen) if maximize else min(seen))


def stop(trial: optuna.Trial, step: int, value: float) -> None:
    """``trial`` pruned, with the study's pruner's reason (user attribute ``pruned_reason``, and
    the exception's text, which the trial's run keeps as its note)."""
    reasons = getattr(trial.study.pruner, "reasons", {})
    reason = reasons.get(trial.number, f"pruned at step {step}: value {value:.4f}")
    trial.set_user_attr("pruned_reason", reason)
    raise optuna.TrialPruned(reason)


class FoldEpochs(pl.Callback):
    """Fold ``fold``'s epochs to Optuna as running means (``prior``: the sum of the folds done),
    and the trial pruned where the pruner says so."""

    def __init__(self, trial: optuna.Trial, fold: int, prior: float, max_epochs: int,
                 monitor: str):
        self.trial, self.fold, self.prior = trial, fold, prior
        self.max_epochs, self.monitor = max_epochs, monitor

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        mean = (self.prior + score) / (self.fold + 1)
        step = fold_step(self.fold, int(trainer.current_epoch), self.max_epochs)
        self.trial.report(mean, step=step)
        if self.trial.should_prune():
            stop(self.trial, step, mean)


class FoldReports:
    """A cross-validated trial's reports: ``callbacks(fold)`` for each fold's trainer,
    ``after_fold(fold, running mean)`` at each fold's end."""

    def __init__(self, trial: optuna.Trial, max_epochs: int, monitor: str):
        self.trial, self.max_epochs, self.monitor = trial, max_epochs, monitor
        self.prior = 0.0

    def callbacks(self, fold: int) -> Sequence[pl.Callback]:
        return [FoldEpochs(self.trial, fold, self.prior, self.max_epochs, self.monitor)]

    def after_fold(self, fold: int, running_mean: float) -> None:
        self.prior = running_mean * (fold + 1)
        step = fold_step(fold, self.max_epochs, self.max_epochs)
        self.trial.report(running_mean, step=step)
        if self.trial.should_prune():
            stop(self.trial, step, running_mean)
