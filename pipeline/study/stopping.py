"""When a study stops before its budget: the search has stopped paying (``sweep.patience``
finished trials in a row without beating the best by ``sweep.min_delta``), the objective has
reached ``sweep.target``, or one error keeps failing this worker's trials. Every worker of the
study reads the same trials, and the first to stop leaves the reason on the study for the rest."""

from __future__ import annotations

import json
import math
import re

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from pipeline.study.budget import FINISHED_STATES

REASON = "stop_reason"  # the study's user attribute the first stopping worker sets
STOP_KEYS = ("patience", "min_delta", "target")  # sweep.* keys a stop reason is reached under


def _stop_settings(cfg: DictConfig) -> str:
    return json.dumps({key: cfg.sweep.get(key) for key in STOP_KEYS}, sort_keys=True,
                      default=str)


def search_stopped(cfg: DictConfig, study: optuna.Study) -> str | None:
    """Why the study is done before its budget (None: it is not)."""
    told = study.user_attrs.get(REASON)
    if isinstance(told, dict) and told.get("settings") == _stop_settings(cfg):
        return str(told["reason"])  # reached under these settings (a bare string: unknown ones)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.state in FINISHED_STATES),
                    key=lambda t: t.number)
    best, since = None, 0
    min_delta = float(cfg.sweep.get("min_delta") or 0.0)
    for trial in trials:
        value = trial.value if trial.state == TrialState.COMPLETE else None
        gain = None if value is None or best is None else (
            value - best if maximize else best - value)
        if value is not None and math.isfinite(value) and (gain is None or gain > min_delta):
            best, since = value, 0
        else:
            since += 1
    target = cfg.sweep.get("target")
    if target is not None and best is not None and (
            best >= float(target) if maximize else best <= float(target)):
        return f"the objective reached sweep.target={target} ({best:.4f})"
    patience = cfg.sweep.get("patience")
    if patience and best is not None and since >= int(patience):
        return (f"{since} finished trials in a row did not improve the best ({best:.4f}) by "
                f"sweep.min_delta={min_delta:g} (sweep.patience={patience})")
    return None


def tell_workers(cfg: DictConfig, study: optuna.Study, reason: str) -> None:
    """Leave the reason, and the settings it was reached under, on the study: other workers with
    these settings stop at their next look."""
    told = study.user_attrs.get(REASON)
    if not (isinstance(told, dict) and told.get("settings") == _stop_settings(cfg)):
        study.set_user_attr(REASON, {"reason": reason, "settings": _stop_settings(cfg)})



def _shape(error: str) -> str:
    """An error with its paths and numbers blanked: the same failure on other files or sizes
    (out of memory by 2.1 or 2.3 GiB, no space for one cache entry or another) is one error."""
    error = re.sub(r"(/[\w.+~-]+)+", "<path>", error)  # scratch names carry host~pid~start
    error = re.sub(r"\b[0-9a-f]{32}\b", "<id>", error)
    return re.sub(r"\d+(\.\d+)?", "N", error)


class FailureStreak:
    """This worker's trials failing in a row with one error: after ``limit`` of them the sweep
    stops instead of spending its budget on the same failure."""

    def __init__(self, limit: int):
        self.limit = limit
        self.errors: list[str] = []

    def add(self, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL or trial.user_attrs.get("interrupted"):
            self.errors = []
            return
        error = str(trial.user_attrs.get("error", "an unknown error"))
        same = self.errors and _shape(self.errors[-1]) == _shape(error)
        self.errors = [*self.errors, error] if same else [error]

    @property
    def stopped(self) -> bool:
        return self.limit > 0 and len(self.errors) >= self.limit

    def reason(self) -> str:
        return (f"{len(self.errors)} consecutive trials failed with the same error "
                f"(sweep.max_consecutive_failures={self.limit}): {self.errors[-1]}")
