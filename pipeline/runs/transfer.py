"""A command whose backbone starts from a logged run (``backbone.weights=run:...``): the run
named before anything trains (``run:champion`` becomes the champion's run id in the overrides
every trial replays and every run logs), its backbone fetched once, bad input refused."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from pipeline.config import compose
from pipeline.models.transfer import transfer_spec
from pipeline.tracking.store import open_store
from pipeline.tracking.transfer import fetch_backbone, resolve_champion


def with_transfer(cfg: DictConfig, overrides: Sequence[str]) -> tuple[DictConfig, list[str]]:
    """(cfg, overrides) with ``run:champion`` resolved and the run's backbone fetched; as they
    are when the backbone starts elsewhere."""
    spec = transfer_spec(cfg)
    if spec is None:
        return cfg, list(overrides)
    store = open_store(cfg, f"no MLflow store to take backbone.weights={spec} from")
    resolved = resolve_champion(store, cfg, overrides)
    if resolved != list(overrides):
        cfg = compose(resolved)
        print(f"backbone.weights={spec}: the champion is {transfer_spec(cfg)}", flush=True)
    fetch_backbone(store, cfg)
    return cfg, resolved
