"""Models in MLflow, stored as data: a run's networks' weights (safetensors) plus a manifest that
rebuilds them (``model_files``), under the run's artifact folder ``model``; read back as a
``LoadedModel`` that predicts. Nothing loaded is unpickled unless ``tracking.allow_pickle=true``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from pipeline.common.errors import PipelineError, one_line
from pipeline.common.faults import fault_point
from pipeline.data.bundle import DataBundle
from pipeline.models import ChestXrayNet
from pipeline.tracking.model_files import (
    MANIFEST,
    ServedNetworks,
    load_networks,
    net_config,
    pickled_files,
    read_manifest,
    refuse_pickle,
    write_manifest,
    write_weights,
)

if TYPE_CHECKING:
    from pipeline.tracking.store import Store

MODEL_PATH = "model"  # the run's artifact folder holding its model
WEIGHTS = "weights.safetensors"


def upload(store: Store, run_id: str, write: Callable[[Path], dict]) -> None:
    """Weights first, the manifest last: ``write(folder)`` leaves the weights files in
    ``folder`` and returns the manifest. Killed in between (fault point ``log_model``), the run
    holds weights without a manifest, which never loads."""
    with tempfile.TemporaryDirectory() as tmp:
        weights, meta = Path(tmp) / "weights", Path(tmp) / "manifest"
        weights.mkdir()
        meta.mkdir()
        manifest = write(weights)
        store.log_artifacts(run_id, weights, MODEL_PATH)
        fault_point("log_model")
        write_manifest(meta, manifest)
        store.log_artifacts(run_id, meta, MODEL_PATH)


def log_model(nets: list[ChestXrayNet], cfg: DictConfig, bundle: DataBundle, run_id: str,
              store: Store) -> None:
    """The run's model: one network, or a cross-validated run's fold networks (served as the
    mean of their probabilities), as weights plus the manifest that rebuilds them."""
    def write(folder: Path) -> dict:
        digest = write_weights(folder / WEIGHTS, nets)
        return {"kind": "networks", "classes": list(bundle.classes),
                "image_size": int(bundle.image_size), "positive_class": bundle.positive_class,
                "members": [{"run_id": run_id, "weights": WEIGHTS, "sha256": digest,
                             "folds": len(nets), "config": net_config(cfg),
                             "weights_from": nets[0].weights}]}

    upload(store, run_id, write)


def model_uri(run: Any) -> str:
    """Where the run's model is: its artifact folder ``model`` (an older run's MLflow logged
    model, which only ``tracking.allow_pickle=true`` loads, is named by its model id)."""
    outputs = getattr(run, "outputs", None)
    models = list(getattr(outputs, "model_outputs", None) or [])
    if models:
        return f"models:/{models[-1].model_id}"
    return f"runs:/{run.info.run_id}/{MODEL_PATH}"


@dataclass
class LoadedModel:
    """A logged model: float images (B, 1, S, S) in [0, 255] -> probabilities."""

    module: Any  # ServedNetworks (or, opted in, an older pickled model)
    classes: list[str]
    image_size: int
    positive_class: str | None
    uri: str
    manifest: dict | None = None  # None: an older pickled model

    @property
    def per_network(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if isinstance(self.module, ServedNetworks):
            return self.module.per_network
        from pipeline.tracking.legacy_models import per_network

        return per_network(self.module)

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
        per_network = self.per_network
        out = [per_network(images[i : i + batch_size].float()).float()
               for i in range(0, len(images), batch_size)]
        return torch.cat(out, dim=1) if out else torch.zeros(1, 0, len(self.classes))


def allow_pickle(cfg: DictConfig) -> bool:
    """``tracking.allow_pickle``: the user's opt-in to load models stored as pickles."""
    return bool(cfg.tracking.get("allow_pickle", False))


def registered_source(uri: str, tracking_uri: str | None) -> str:
    """A ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` URI as the artifact URI of
    that version in the registry of ``tracking_uri``. MLflow resolves ``models:/`` against the
    process-wide registry URI whatever store is passed (its own note in models_artifact_repo),
    so a command could read another store's champion; any other URI is returned as it is."""
    if not uri.startswith("models:/") or tracking_uri is None:
        return uri
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    head, _, rest = uri.removeprefix("models:/").partition("/")
    if "@" not in head and not rest:  # models:/<logged model id>: the tracking store's own
        return uri
    if "@" in head:
        name, alias = head.split("@", 1)
        version = client.get_model_version_by_alias(name, alias).version
    else:
        name, (version, _, rest) = head, rest.partition("/")
    source = client.get_model_version_download_uri(name, version)
    return f"{source.rstrip('/')}/{rest}" if rest else source


def download(uri: str, folder: Path, tracking_uri: str | None) -> Path:
    """The model folder at ``uri`` copied into ``folder`` (nothing in it is read yet)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(
            artifact_uri=registered_source(uri, tracking_uri), dst_path=str(folder),
            tracking_uri=tracking_uri, registry_uri=tracking_uri))
    except (MlflowException, OSError) as exc:
        raise PipelineError(f"cannot load the model at {uri}: {one_line(exc)}") from exc


def load_model(uri: str, tracking_uri: str | None = None, allow_pickle: bool = False
               ) -> LoadedModel:
    """The model at ``uri`` (in the store at ``tracking_uri``; None: MLflow's default), its
    networks rebuilt from its manifest and given its weights. A pickled model is refused unless
    ``allow_pickle`` (``tracking.allow_pickle=true``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = download(uri, Path(tmp), tracking_uri)
        if not (path / MANIFEST).is_file():
            pickled = pickled_files(path)
            if pickled and not allow_pickle:
                raise refuse_pickle(uri, pickled)
            if pickled:
                from pipeline.tracking.legacy_models import load_pickled

                return load_pickled(path, uri)
        manifest = read_manifest(path, uri)
        classes = [str(c) for c in manifest["classes"]]
        groups = [load_networks(path, m, len(classes), uri) for m in manifest["members"]]
    return LoadedModel(module=ServedNetworks(groups).eval(), classes=classes,
                       image_size=int(manifest["image_size"]),
                       positive_class=manifest.get("positive_class"), uri=uri,
                       manifest=manifest)
