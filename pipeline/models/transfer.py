"""``backbone.weights=run:<RUN_ID>``: a backbone that starts from the network of a run this
pipeline logged (say one trained on a large chest X-ray collection). Only the backbone's tensors
are taken (the head is new); the tracking layer puts them in the state directory as a tensor file
(``transfer_file``), read here without unpickling anything. Such weights count as pretrained:
freeze depth is searched on them and the feature cache applies."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from safetensors import safe_open
from torch import nn

from pipeline.common.errors import ConfigError, PipelineError

PREFIX = "run:"
CHAMPION = "champion"


def transfer_spec(cfg: DictConfig) -> str | None:
    """The ``run:...`` the backbone starts from (the whole config or its backbone node)."""
    cfg = cfg.backbone if "backbone" in cfg else cfg
    weights = cfg.get("weights")
    if weights in (None, ""):
        return None
    weights = str(weights)
    if not weights.startswith(PREFIX) or weights == PREFIX:
        raise ConfigError(f"backbone.weights={weights}: use run:<RUN_ID> or run:{CHAMPION} (the "
                          "backbone of a run this pipeline logged), or null")
    if cfg.get("weights_path"):
        raise ConfigError(f"backbone.weights={weights} and backbone.weights_path="
                          f"{cfg.weights_path} both name starting weights: keep one")
    return weights


def transfer_run(cfg: DictConfig) -> str | None:
    """The run id of ``backbone.weights=run:<id>`` (None: no such weights). ``run:champion``
    must have been resolved to its run by the command that read it."""
    spec = transfer_spec(cfg)
    if spec is None:
        return None
    run_id = spec.removeprefix(PREFIX)
    if run_id == CHAMPION:
        raise ConfigError(f"backbone.weights={spec} was not resolved to the champion's run: "
                          "pass it on the command line of python -m pipeline.sweep or "
                          "pipeline.train, or name the run: backbone.weights=run:<RUN_ID>")
    return run_id


def transfer_file(state: Path, run_id: str) -> Path:
    """Where the backbone tensors of run ``run_id`` are kept in the state directory."""
    return state / "transfer" / f"{run_id}.safetensors"


def mismatch(run_id: str, theirs: str, ours: str) -> PipelineError:
    return PipelineError(
        f"backbone.weights=run:{run_id} holds a {theirs} backbone, but backbone={ours}: use "
        f"backbone={theirs}, or a run that trained {ours}")


def load_transfer(backbone: nn.Module, path: Path, cfg: DictConfig, run_id: str) -> None:
    """Load the backbone tensors of ``path`` into ``backbone`` (every key, same shapes)."""
    if not path.is_file():
        raise PipelineError(f"the backbone of run {run_id} is not in {path}: start the command "
                            f"again (it fetches it from the MLflow store)")
    with safe_open(str(path), framework="pt") as handle:
        theirs = (handle.metadata() or {}).get("backbone", "?")
        state = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    if theirs != str(cfg.name):
        raise mismatch(run_id, theirs, str(cfg.name))
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PipelineError(f"the backbone of run {run_id} does not fit backbone={cfg.name}: "
                            f"{str(exc).splitlines()[0]}") from exc
