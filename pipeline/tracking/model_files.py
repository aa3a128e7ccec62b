"""A logged model as data, never code: its networks' weights (safetensors) and a JSON manifest
holding what rebuilds them through the project's own builders (backbone, head, loss config,
classes, image size). Loading one runs nothing its writer chose; a model stored as a pickle (an
MLflow PyTorch or pyfunc model, a ``.pth``, an ensemble's ``python_model.pkl``) is refused unless
the user opts in with ``tracking.allow_pickle=true``.

The manifest is written last and names the sha256 of each weights file, so a model cut off
mid-upload (weights without a manifest, or a manifest whose weights differ) never loads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from pipeline.common.errors import PipelineError
from pipeline.models import ChestXrayNet, build_model

FORMAT = "chest-xray-weights/1"
MANIFEST = "manifest.json"
ALLOW_PICKLE = "tracking.allow_pickle=true"
# What an MLflow flavour or torch.save leaves: each is unpickled when loaded.
PICKLED = ("MLmodel", "*.pkl", "*.pickle", "*.pth", "*.pt", "*.pt2", "*.ckpt", "*.bin")
HEADS = "pipeline.models.heads."
# The config a network is rebuilt from: what build_model reads, nothing else.
NET_KEYS = ("backbone", "head", "loss")


def net_config(cfg: DictConfig) -> dict:
    """The resolved config that rebuilds a run's networks (weights come from the file)."""
    out = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in NET_KEYS}
    out["dataset"] = {"image_size": int(cfg.dataset.image_size)}
    return out


def sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_weights(path: Path, nets: Sequence[ChestXrayNet]) -> str:
    """Every network's state dict in one safetensors file (``nets.<i>.<key>``); its sha256."""
    tensors = {f"nets.{i}.{k}": v.detach().cpu().contiguous().clone()
               for i, net in enumerate(nets) for k, v in net.state_dict().items()}
    save_file(tensors, str(path))
    return sha256(path)


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    path = folder / MANIFEST
    path.write_text(json.dumps({"format": FORMAT, **manifest}, indent=1, sort_keys=True))
    return path


def pickled_files(folder: Path) -> list[str]:
    """The files of ``folder`` that only pickle can load."""
    return sorted({str(p.relative_to(folder)) for pattern in PICKLED
                   for p in folder.rglob(pattern) if p.is_file()})


def refuse_pickle(uri: str, files: Sequence[str]) -> PipelineError:
    return PipelineError(
        f"the model at {uri} is stored as a pickle ({', '.join(files[:3])}): loading it would "
        f"run whatever code its writer put in it, so it is refused; log it again with this "
        f"version (python -m pipeline.rerun <its run id>), or pass {ALLOW_PICKLE} if you trust "
        f"everyone who can write to this MLflow store")


def read_manifest(folder: Path, uri: str) -> dict:
    """The manifest of a downloaded model folder, checked; PipelineError when it is missing
    (a cut-off upload) or not one this version wrote."""
    path = folder / MANIFEST
    if not path.is_file():
        raise PipelineError(
            f"the model at {uri} is incomplete: it has no {MANIFEST} (its upload was cut off "
            f"before it ended), so it cannot be loaded; train the run again")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PipelineError(f"the model at {uri} has an unreadable {MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PipelineError(f"the model at {uri} is not in the format {FORMAT} "
                            f"(its manifest says {manifest.get('format')!r})")
    return manifest


def checked_config(config: Mapping[str, Any], uri: str) -> DictConfig:
    """A manifest's network config, with nothing it could make instantiate call but the
    project's own heads, and with no weights to fetch (they come from the file)."""
    cfg = OmegaConf.create(dict(config))
    target = str(cfg.head.get("_target_", ""))
    if not target.startswith(HEADS) or "." in target.removeprefix(HEADS):
        raise PipelineError(f"the model at {uri} names head._target_={target!r}: only "
                            f"{HEADS}* may be built from a logged model")
    for key in NET_KEYS:
        found = _targets(OmegaConf.to_container(cfg[key]))
        if found - ({target} if key == "head" else set()):
            raise PipelineError(f"the model at {uri} has a _target_ inside {key} (refused: a "
                                "logged model builds only the project's own heads)")
    cfg.backbone.pretrained = False
    cfg.backbone.weights_path = None
    if "weights" in cfg.backbone:
        cfg.backbone.weights = None
    cfg.backbone.freeze_depth = 0
    return cfg


def _targets(node: Any) -> set[str]:
    """Every ``_target_`` value at any depth below ``node``, the top level's included."""
    if isinstance(node, Mapping):
        own = {str(node["_target_"])} if "_target_" in node else set()
        return own.union(*(_targets(v) for k, v in node.items() if k != "_target_"))
    if isinstance(node, list):
        return set().union(*(_targets(v) for v in node))
    return set()


def load_networks(folder: Path, entry: Mapping[str, Any], num_classes: int, uri: str
                  ) -> list[ChestXrayNet]:
    """The networks of one manifest entry (``config``, ``weights``, ``sha256``, ``folds``),
    rebuilt and given their weights (a tensor file: nothing is unpickled)."""
    name = str(entry["weights"])
    if Path(name).name != name or name.startswith("."):
        raise PipelineError(f"the model at {uri} names weights file {name!r}: only a file "
                            "beside its manifest is read")
    path = folder / name
    if not path.is_file() or sha256(path) != entry.get("sha256"):
        raise PipelineError(f"the model at {uri} is incomplete: {entry['weights']} is missing or "
                            "differs from what its manifest recorded; train the run again")
    cfg = checked_config(entry["config"], uri)
    state = load_file(str(path))
    nets = []
    for i in range(int(entry["folds"])):
        prefix = f"nets.{i}."
        net = build_model(cfg, num_classes)
        try:
            net.load_state_dict({k.removeprefix(prefix): v for k, v in state.items()
                                 if k.startswith(prefix)}, strict=True)
        except RuntimeError as exc:
            raise PipelineError(f"the weights of the model at {uri} do not fit the network its "
                                f"manifest builds: {str(exc).splitlines()[0]}") from exc
        nets.append(net.eval())
    return nets


class ServedNetworks(torch.nn.Module):
    """Groups of networks as one model: a group is one run's networks (its folds), the model's
    probabilities the mean over groups of each group's mean (one group: a run's model; several:
    an ensemble of runs)."""

    def __init__(self, groups: Sequence[Sequence[ChestXrayNet]]):
        super().__init__()
        self.groups = torch.nn.ModuleList(torch.nn.ModuleList(g) for g in groups)

    def group_probabilities(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.stack([net(x).softmax(dim=1) for net in g]) for g in self.groups]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.mean(dim=0) for p in self.group_probabilities(x)]).mean(dim=0)

    def per_network(self, x: torch.Tensor) -> torch.Tensor:
        """(n, B, classes): a run's fold networks one by one; an ensemble's members (each the
        mean of its folds) one by one."""
        groups = self.group_probabilities(x)
        return groups[0] if len(groups) == 1 else torch.stack([p.mean(dim=0) for p in groups])
