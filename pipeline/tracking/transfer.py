"""The backbone of a logged run as a starting point (``backbone.weights=run:<RUN_ID>`` or
``run:champion``): the run's model read by the safe loader (weights and manifest, no pickle),
its first network's backbone tensors kept in the state directory, where the models layer reads
them. The head is never taken."""

from __future__ import annotations

import os
from collections.abc import Sequence

from omegaconf import DictConfig
from safetensors.torch import save_file

from pipeline.common.atomic import file_lock, temp_beside
from pipeline.common.errors import PipelineError
from pipeline.config import state_dir
from pipeline.models.transfer import CHAMPION, PREFIX, mismatch, transfer_file, transfer_run
from pipeline.models.transfer import transfer_spec as spec_of
from pipeline.tracking.models import allow_pickle, load_model, model_uri
from pipeline.tracking.registry import champion_version
from pipeline.tracking.store import Store

KEY = "backbone.weights"


def resolve_champion(store: Store, cfg: DictConfig, overrides: Sequence[str]) -> list[str]:
    """``overrides`` with ``backbone.weights=run:champion`` replaced by the champion's run id
    (``select.model_name``), so every trial and the logged config name the run itself."""
    if spec_of(cfg) != PREFIX + CHAMPION:
        return list(overrides)
    run_id = str(champion_version(store, str(cfg.select.model_name)).run_id)
    return [f"{KEY}={PREFIX}{run_id}" if o.lstrip("+").split("=", 1)[0] == KEY else o
            for o in overrides]


def fetch_backbone(store: Store, cfg: DictConfig) -> str | None:
    """Put the backbone of ``cfg``'s ``backbone.weights=run:<id>`` into the state directory
    (once; workers take turns); the run id, or None when the backbone starts elsewhere."""
    run_id = transfer_run(cfg)
    if run_id is None:
        return None
    path = transfer_file(state_dir(cfg), run_id)
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            return run_id
        run = store.get_run(run_id)
        model = load_model(model_uri(run), store.uri, allow_pickle(cfg))
        groups = getattr(model.module, "groups", None)
        if groups is None:
            raise PipelineError(f"backbone.weights=run:{run_id}: its model is an older pickled "
                                "one, which has no backbone to take; train that run again")
        if len(groups) > 1:
            raise PipelineError(f"backbone.weights=run:{run_id} is an ensemble of several runs: "
                                "name one of its member runs")
        theirs = str(model.manifest["members"][0]["config"]["backbone"]["name"])
        if theirs != str(cfg.backbone.name):
            raise mismatch(run_id, theirs, str(cfg.backbone.name))
        net = groups[0][0]  # a cross-validated run: its first fold's network
        tensors = {k: v.detach().contiguous().clone() for k, v in net.backbone.state_dict().items()}
        with temp_beside(path) as tmp:
            save_file(tensors, str(tmp), metadata={"backbone": theirs, "run_id": run_id})
            os.replace(tmp, path)
    return run_id
