"""Models logged by earlier versions as MLflow PyTorch or pyfunc models: loading them unpickles,
so only a user who opted in (``tracking.allow_pickle=true``) gets here."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.common.errors import PipelineError, one_line

if TYPE_CHECKING:
    from pipeline.tracking.models import LoadedModel


class PyfuncModule:
    """A loaded pyfunc model called like the PyTorch ones: tensor in, probability tensor out."""

    def __init__(self, model: Any):
        self.model = model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.model.predict(x.numpy()), dtype=np.float32))

    def state_dict(self) -> dict:
        return {}  # no single network to rebuild (Grad-CAM needs one)


def load_pickled(path: Path, uri: str) -> LoadedModel:
    """An older MLflow model folder (opted in: this unpickles what it holds)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from pipeline.tracking.models import LoadedModel

    try:
        logged = Model.load(str(path))
        meta = logged.metadata or {}
        if "pytorch" in logged.flavors:
            module: Any = mlflow.pytorch.load_model(str(path), map_location="cpu")
        else:
            module = PyfuncModule(mlflow.pyfunc.load_model(str(path)))
    except (MlflowException, OSError) as exc:
        raise PipelineError(f"cannot load the model at {uri}: {one_line(exc)}") from exc
    missing = [k for k in ("classes", "image_size") if k not in meta]
    if missing:
        raise PipelineError(f"the model at {uri} has no {' or '.join(missing)} in its metadata: "
                            "it was not logged by run_training")
    return LoadedModel(module=module, classes=[str(c) for c in meta["classes"]],
                       image_size=int(meta["image_size"]),
                       positive_class=meta.get("positive_class"), uri=uri)


def per_network(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module`` made to return its networks' probabilities before they are averaged: an
    ensemble's members one by one; a mean of fold networks (an exported graph ending in
    ``mean(stack(...))``) with the mean cut off; else the one network's."""
    members = getattr(getattr(module, "model", None), "unwrap_python_model", None)
    if members is not None:
        nets = members().members
        return lambda x: torch.stack([m(x).float() for m in nets])
    graph = getattr(module, "graph", None)
    output = next((n for n in graph.nodes if n.op == "output"), None) if graph else None
    mean = output.args[0][0] if output is not None and isinstance(output.args[0], tuple) else None
    stacked = mean.args[0] if mean is not None and "mean" in str(mean.target) else None
    if stacked is None or "stack" not in str(getattr(stacked, "target", "")):
        return lambda x: module(x)[None]
    cut = copy.deepcopy(module)
    node = next(n for n in cut.graph.nodes if n.name == stacked.name)
    out = next(n for n in cut.graph.nodes if n.op == "output")
    out.args = ((node,),)
    cut.graph.eliminate_dead_code()
    cut.recompile()
    return cut
