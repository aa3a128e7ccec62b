"""What a sweep invocation runs, settled before any work: the search space as this study searches
it, and the config each trial starts from (composed once, for every trial)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig

from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.study.identity import StudyIdentity, identify
from pipeline.study.joint import prepare_space
from pipeline.study.samplers import make_pruner, make_sampler
from pipeline.study.space import SearchSpace, load_space
from pipeline.study.storage import study_name


@dataclass(frozen=True)
class StudyPlan:
    cfg: DictConfig  # the command's config: the study's own settings (sweep.*)
    overrides: tuple[str, ...]  # the command line, replayed under each trial's sampled values
    space: SearchSpace  # as this study searches it
    trial_cfg: DictConfig  # what a trial runs before its sampled values

    @property
    def joint(self) -> bool:
        """A study across backbones (the space chooses the backbone)."""
        return bool(self.space.backbones)

    def identity(self, fingerprint: str) -> StudyIdentity:
        """What this study searches, on the data of ``fingerprint``."""
        return identify(self.trial_cfg, self.space, fingerprint)

    def name(self, identity: StudyIdentity) -> str:
        return study_name(self.cfg, identity, self.joint)


def plan_study(cfg: DictConfig, overrides: Sequence[str] = (), echo: bool = True) -> StudyPlan:
    """The plan of ``cfg`` (composed from ``overrides``), each narrowing of the space said in one
    line (``echo``); a bad space or sweep.* setting is one line here, before any store is opened
    or image decoded."""
    say = print if echo else (lambda *a, **k: None)
    if cfg.evaluate_test:
        raise ConfigError("evaluate_test=true is refused in a sweep: the test split chooses "
                          "nothing, and python -m pipeline.select_best tests the chosen models "
                          "once, after selection (drop evaluate_test=true)")
    space = load_space(str(cfg.sweep.space), cfg)
    # What a trial runs before its sampled values: the base config, the space's fixed keys, then
    # the command line. Every study-level setting (the pruner's budget) is read from it.
    trial_cfg = compose([*space.fixed_overrides(), *overrides])
    if trial_cfg.evaluate_test:
        raise ConfigError(f"evaluate_test=true is refused in a sweep (the search space "
                          f"{cfg.sweep.space} sets it): the test split chooses nothing")
    make_sampler(trial_cfg), make_pruner(trial_cfg)  # a bad sweep.* setting stops before any work
    return StudyPlan(cfg, tuple(overrides), prepare_space(space, cfg, trial_cfg, say), trial_cfg)
