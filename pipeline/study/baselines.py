"""The seed papers' published recipes (``sweeps/baselines/papers.yaml``) as a study's first trials
(``sweep.baselines=papers``), so the search can be seen against them.

A recipe fixes what its paper states: backbone, optimizer, learning rate, batch size, freeze depth,
head and epochs (capped by the sweep's own budget). What a paper is silent on takes the config's
value. On random weights a recipe that freezes stages runs unfrozen, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import yaml
from omegaconf import DictConfig

from pipeline.common.cli import Say
from pipeline.common.errors import ConfigError
from pipeline.study.space import SWEEPS_DIR, SearchSpace

RECIPES = SWEEPS_DIR / "baselines" / "papers.yaml"
FIELDS = ("paper", "backbone", "optimizer", "lr", "batch_size", "freeze_depth", "head", "epochs",
          "passage", "silent")


@dataclass(frozen=True)
class Recipe:
    paper: str
    backbone: str
    optimizer: str | None
    lr: float | None
    batch_size: int | None
    freeze_depth: int | None
    head: str | None
    epochs: int | None
    passage: str = ""
    silent: tuple[str, ...] = ()


def load_recipes(path=RECIPES) -> list[Recipe]:
    """Every recipe of the file; a malformed entry is one clear error naming it."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML ({exc})") from exc
    out = []
    for i, entry in enumerate((raw or {}).get("recipes") or []):
        if not isinstance(entry, dict) or set(entry) - set(FIELDS) or "backbone" not in entry:
            raise ConfigError(f"{path}: recipes[{i}] needs the fields {list(FIELDS)}")
        out.append(Recipe(
            paper=str(entry["paper"]), backbone=str(entry["backbone"]),
            optimizer=entry.get("optimizer"),
            lr=None if entry.get("lr") is None else float(entry["lr"]),
            batch_size=entry.get("batch_size"), freeze_depth=entry.get("freeze_depth"),
            head=entry.get("head"), epochs=entry.get("epochs"),
            passage=str(entry.get("passage", "")), silent=tuple(entry.get("silent") or ()),
        ))
    return out


def baseline_trials(space: SearchSpace, trial_cfg: DictConfig, random_weights: bool,
                    say: Say) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(params, user_attrs) of the recipes of this study's backbones, in the file's order."""
    backbones = space.backbones or [str(trial_cfg.backbone.name)]
    trials = []
    for recipe in load_recipes():
        if recipe.backbone not in backbones:
            continue
        depth = recipe.freeze_depth or 0
        if depth and random_weights:
            say(f"baseline of paper {recipe.paper} ({recipe.backbone}) freezes {depth} stage(s), "
                "but the weights are random: it runs unfrozen (backbone.freeze_depth=0)")
            depth = 0
        values: dict[str, Any] = {
            "backbone": recipe.backbone,
            "optimizer.lr": recipe.lr if recipe.lr is not None else float(trial_cfg.optimizer.lr),
            "dataset.batch_size": recipe.batch_size or int(trial_cfg.dataset.batch_size),
            "backbone.freeze_depth": depth,
        }
        params = {k: v for k, v in values.items() if k in space.params and _fits(
            space.params[k], v)}
        overrides = [f"{k}={v}" for k, v in values.items()
                     if k not in params and k != "backbone" and k in space.params]
        if recipe.optimizer:  # a group: Hydra applies it before every key, whatever the order
            overrides.insert(0, f"optimizer={recipe.optimizer}")
        if recipe.head:
            overrides.append(f"head={recipe.head}")
        if recipe.epochs:
            budget = int(trial_cfg.trainer.max_epochs)
            overrides.append(f"trainer.max_epochs={min(int(recipe.epochs), budget)}")
        trials.append((params, {"baseline": recipe.paper, "recipe_overrides": overrides}))
    return trials


def _fits(spec: dict[str, Any], value: Any) -> bool:
    """Whether the space's distribution holds ``value`` (else the recipe sets it directly)."""
    if spec["type"] == "categorical":
        return value in spec["choices"]
    high = spec["high"]
    return spec["low"] <= value and (high == "max" or value <= high)


def enqueue_baselines(study: optuna.Study, cfg: DictConfig, space: SearchSpace,
                      trial_cfg: DictConfig, random_weights: bool,
                      say: Say) -> int:
    """The recipes as the first trials of a study that has none yet; how many were queued."""
    if str(cfg.sweep.get("baselines", "none")) != "papers" or study.get_trials(deepcopy=False):
        return 0
    trials = baseline_trials(space, trial_cfg, random_weights, say)
    for params, attrs in trials:
        study.enqueue_trial(params, user_attrs=attrs)
    if trials:
        papers = ", ".join(sorted({attrs["baseline"] for _, attrs in trials}))
        say(f"queued {len(trials)} baseline trial(s): the published recipes of paper(s) "
            f"{papers} ({RECIPES.relative_to(SWEEPS_DIR.parent)})", flush=True)
    return len(trials)


def best_searched_and_recipe(study: optuna.Study) -> tuple[float, float] | None:
    """(best searched value, best baseline value) among complete trials; None without both."""
    searched, baseline = [], []
    for t in study.get_trials(deepcopy=False):
        if t.value is not None and t.state.name == "COMPLETE":
            (baseline if t.user_attrs.get("baseline") else searched).append(t.value)
    if not searched or not baseline:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(searched), pick(baseline)
