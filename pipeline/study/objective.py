"""One trial of a study: the space sampled, an ordinary config composed from it, trained by
``run_training`` as a nested MLflow run; its objective back to Optuna.

A pruned trial's ``TrialPruned`` comes from the pruning callback inside the fit and travels to
Optuna as it is; a training that failed for a reason of its own is a ``TrialFailed``, which the
study loop lets Optuna record as FAIL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import optuna
from omegaconf import DictConfig

from pipeline.common.cli import Say
from pipeline.config import PipelineError, compose
from pipeline.runs.context import Context
from pipeline.runs.training_run import TrainResult, run_training
from pipeline.study.budget import progress
from pipeline.study.plan import StudyPlan
from pipeline.study.space import overrides_of
from pipeline.study.summary import fmt
from pipeline.tracking.schema import Role, State, Tag
from pipeline.training.signals import Interrupted


class TrialFailed(Exception):
    """A training that ended FAIL: Optuna records the trial as FAIL and the sweep goes on."""


class EpochCount(pl.Callback):
    """Validated epochs of the classifier stage (a pruned trial's epochs)."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.epochs += 1


def fold_pruner(trial: optuna.Trial, first_step: int) -> Callable[[int, float], None]:
    """After fold i of a cross-validated trial: the running mean of its folds to Optuna at step
    ``first_step + i``, and the trial pruned there when the pruner says so. (The running mean,
    not Optuna's WilcoxonPruner: a signed-rank test over 5 folds cannot reject before the last
    fold, and the point is to stop hopeless trials after one or two.)"""

    def after_fold(fold: int, running_mean: float) -> None:
        trial.report(running_mean, step=first_step + fold)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {fold}: running mean {running_mean:.4f}")

    return after_fold


class Objective:
    """The callable ``study.optimize`` runs once per trial."""

    def __init__(self, ctx: Context, plan: StudyPlan, study: optuna.Study, parent_run_id: str,
                 say: Say, callbacks: Sequence[pl.Callback] = ()):
        self.ctx = ctx
        self.cfg: DictConfig = plan.cfg
        self.study = study
        self.space = plan.space
        self.overrides = list(plan.overrides)
        self.parent_run_id = parent_run_id
        self.say = say
        self.callbacks = list(callbacks)

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self.train(trial)
        except Interrupted as exc:  # SIGINT/SIGTERM anywhere in the trial
            trial.set_user_attr("interrupted", True)  # FAIL, but not toward sweep.n_trials
            raise KeyboardInterrupt(str(exc)) from exc  # Optuna marks the trial FAIL

    def train(self, trial: optuna.Trial) -> float:
        from optuna_integration import PyTorchLightningPruningCallback

        cfg, n_total = self.cfg, int(self.cfg.sweep.n_trials)
        values = self.space.sample(trial, cfg)
        # A paper's baseline recipe sets what it states last, over the space's values.
        recipe = list(trial.user_attrs.get("recipe_overrides", []))
        trial_overrides = [*self.space.fixed_overrides(), *self.overrides, *overrides_of(values),
                           *recipe]
        trial.set_user_attr("overrides", trial_overrides)
        finished, running = progress(self.study)  # running: this trial and other workers' ones
        baseline = trial.user_attrs.get("baseline")
        self.say(f"trial {trial.number} ({min(finished + len(running), n_total)} of {n_total}"
                 f"{f', baseline of paper {baseline}' if baseline else ''}): "
                 + ", ".join([f"{k}={fmt(v)}" for k, v in values.items()] + recipe), flush=True)
        try:
            trial_cfg = compose(trial_overrides)
        except PipelineError as exc:  # a sampled value the config refuses: this trial's FAIL
            trial.set_user_attr("error", f"ConfigError: {exc}"[:1000])
            raise TrialFailed(str(exc)) from exc
        tags = {Tag.STUDY_NAME: self.study.study_name, Tag.OPTUNA_TRIAL: str(trial.number),
                Tag.SWEEP_SPACE: self.space.name}
        if trial.user_attrs.get("baseline"):
            tags[Tag.BASELINE] = str(trial.user_attrs["baseline"])
        counter = EpochCount()
        pruning = PyTorchLightningPruningCallback(trial, monitor=str(trial_cfg.trainer.monitor))
        result = None
        try:
            result = run_training(
                self.ctx, trial_cfg, role=Role.TRIAL, run_name=f"trial-{trial.number}",
                parent_run_id=self.parent_run_id, tags=tags, callbacks=[*self.callbacks, counter],
                # Epochs are pruned in the first fold (the single split's only one); later
                # folds report the running mean of the folds so far, at steps after the epochs.
                fold_callbacks=lambda fold: [pruning] if fold == 0 else [],
                after_fold=fold_pruner(trial, int(trial_cfg.trainer.max_epochs)),
                raised={optuna.TrialPruned: State.PRUNED},
                started=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id),
            )
        finally:
            trial.set_user_attr("epochs", result.epochs if result else counter.epochs)
        return self.objective_of(trial, result)

    def objective_of(self, trial: optuna.Trial, result: TrainResult) -> float:
        error = None
        if result.state != State.COMPLETE or result.objective is None:
            error = result.error or "no objective value"
        elif not math.isfinite(result.objective):
            error = f"{self.cfg.objective.metric} is {result.objective}"
        if error:
            trial.set_user_attr("error", error[:1000])  # the reason, in Optuna too
            raise TrialFailed(error)
        return float(result.objective)
