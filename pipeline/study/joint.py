"""The space a study actually searches: the backbones a joint study chooses between
(``sweep.backbones``), those whose ImageNet weights can be had, and no freeze depth on random
weights (a frozen random stage is a random feature extractor, which training refuses)."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.common.cli import Say
from pipeline.common.errors import ConfigError, PipelineError
from pipeline.config.paths import CONF_DIR
from pipeline.models.weights import describe_weights, require_published
from pipeline.study.space import SearchSpace, backbone_option


def prepare_space(space: SearchSpace, cfg: DictConfig, trial_cfg: DictConfig,
                  say: Say) -> SearchSpace:
    """``space`` as this study searches it, each narrowing said in one line."""
    chosen = cfg.sweep.get("backbones")
    if chosen:
        names = [str(n) for n in chosen]
        unknown = [n for n in names if not (CONF_DIR / "backbone" / f"{n}.yaml").is_file()]
        if unknown:
            options = sorted(p.stem for p in (CONF_DIR / "backbone").glob("*.yaml"))
            raise ConfigError(f"sweep.backbones: {unknown} are not backbones; choose from "
                              f"{options}")
        space = space.with_backbones(names)
    if space.backbones and trial_cfg.backbone.pretrained and not trial_cfg.backbone.get(
            "weights_path") and not trial_cfg.backbone.get("weights"):
        space = _with_weights_only(space, say)
    return fit_space_to_weights(space, trial_cfg, say)


def _with_weights_only(space: SearchSpace, say: Say) -> SearchSpace:
    """Backbones without published ImageNet weights (timm has none for ResNet152V2) left out."""
    kept, left = [], []
    for name in space.backbones:
        try:
            require_published(backbone_option(name))
            kept.append(name)
        except PipelineError:
            left.append(name)
    if not kept:
        raise ConfigError(f"none of the backbones {left} has published ImageNet weights: give "
                          "sweep.backbones=[...] others, or backbone.pretrained=false")
    if left:
        say(f"left out of the study (timm publishes no ImageNet weights for them; train them "
            f"alone with backbone.weights_path=<file>): {', '.join(left)}", flush=True)
    return space.with_backbones(kept)


def fit_space_to_weights(space: SearchSpace, trial_cfg: DictConfig, say: Say) -> SearchSpace:
    """On random weights a frozen stage is a random feature extractor, which training refuses:
    the space's freeze depth collapses to the configured one (0), with one line saying so."""
    key = "backbone.freeze_depth"
    if key not in space.params or describe_weights(trial_cfg.backbone) != "random":
        return space
    narrowed = space.without(key)
    say(f"backbone weights are random (backbone.pretrained=false): {key} stays "
        f"{trial_cfg.backbone.freeze_depth} (frozen random stages learn nothing); the space "
        f"searches {', '.join(narrowed.params) or 'nothing else'}", flush=True)
    return narrowed


