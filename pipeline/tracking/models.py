"""Models in MLflow: the best network logged as an exported program with its metadata, and read
back to predict without this code (a ``LoadedModel``)."""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.common.errors import PipelineError, one_line
from pipeline.data.bundle import DataBundle
from pipeline.models import ChestXrayNet


class ProbabilityModel(torch.nn.Module):
    """What is logged as the run's model: uint8/float images (B, 1, S, S) -> class probabilities."""

    def __init__(self, net: ChestXrayNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(dim=1)


class MeanProbabilityModel(torch.nn.Module):
    """Several networks as one model: the mean of their class probabilities (a cross-validated
    run's fold models, the ensemble nnU-Net tests by default)."""

    def __init__(self, nets: list[ChestXrayNet]):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x).softmax(dim=1) for net in self.nets]).mean(dim=0)


def log_model(nets: list[ChestXrayNet], bundle: DataBundle, run_id: str, tracking_uri: str
              ) -> None:
    """The best model as an MLflow PyTorch model (exported program), loadable without this code:
    one network, or the mean probability of a cross-validated run's fold networks; into the
    run ``run_id`` of the store at ``tracking_uri``."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from pipeline.tracking.store import use_for_fluent

    size = bundle.image_size
    if len(nets) == 1:
        wrapper: torch.nn.Module = ProbabilityModel(nets[0]).eval()
    else:
        wrapper = MeanProbabilityModel(nets).eval()
    example = np.zeros((2, 1, size, size), dtype=np.float32)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, size, size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(bundle.classes)))]),
    )
    metadata = {"classes": list(bundle.classes), "image_size": size,
                "positive_class": bundle.positive_class, "folds": len(nets)}
    use_for_fluent(tracking_uri)
    with mlflow.start_run(run_id=run_id, nested=True):
        mlflow.pytorch.log_model(
            wrapper, name="model", input_example=example, signature=signature,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"], metadata=metadata,
        )


def model_uri(run: Any) -> str:
    """Where the run's logged model is: its MLflow 3 logged model, else the run's artifact path."""
    outputs = getattr(run, "outputs", None)
    models = list(getattr(outputs, "model_outputs", None) or [])
    if models:
        return f"models:/{models[-1].model_id}"
    return f"runs:/{run.info.run_id}/model"


@dataclass
class LoadedModel:
    """A logged ``ProbabilityModel``: float images (B, 1, S, S) in [0, 255] -> probabilities."""

    module: Any  # torch.nn.Module, or an ensemble's PyfuncModule: both map tensors to tensors
    classes: list[str]
    image_size: int
    positive_class: str | None
    uri: str

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Probabilities (N, classes) of uint8 or float images (N, S, S) or (N, 1, S, S)."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        out = [
            self.module(images[i : i + batch_size].float()).float()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))

    @torch.no_grad()
    def network_probabilities(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(n, N, classes): each network's probabilities, whose mean ``predict`` gives (a
        cross-validated run: per fold network; an ensemble: per member run, each the mean of its
        own folds); one network: (1, N, classes)."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        per_network = _per_network(self.module)
        out = [per_network(images[i : i + batch_size].float()).float()
               for i in range(0, len(images), batch_size)]
        return torch.cat(out, dim=1) if out else torch.zeros(1, 0, len(self.classes))


def _per_network(module: Any) -> Any:
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


def load_model(uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """Download a logged model once (from the store at ``tracking_uri``; None: MLflow's default)
    and load it with the metadata ``log_model`` wrote."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri,
                registry_uri=tracking_uri))
            logged = Model.load(str(path))
            meta = logged.metadata or {}
            if "pytorch" in logged.flavors:
                module = mlflow.pytorch.load_model(str(path), map_location="cpu")
            else:  # an ensemble: a pyfunc over member models
                from pipeline.tracking.ensemble_model import PyfuncModule

                module = PyfuncModule(mlflow.pyfunc.load_model(str(path)))
        except (MlflowException, OSError) as exc:
            raise PipelineError(f"cannot load the model at {uri}: {one_line(exc)}") from exc
    missing = [k for k in ("classes", "image_size") if k not in meta]
    if missing:
        raise PipelineError(
            f"the model at {uri} has no {' or '.join(missing)} in its metadata: "
            "it was not logged by run_training"
        )
    return LoadedModel(
        module=module,  # an exported program: eval mode is baked in (and .eval() is refused)
        classes=[str(c) for c in meta["classes"]],
        image_size=int(meta["image_size"]),
        positive_class=meta.get("positive_class"),
        uri=uri,
    )
