"""Grad-CAM (Selvaraju et al. 2017) on the last backbone stage: where the network looked.

Paper 003 shows the infected regions this way. The network explained is the logged model's own,
rebuilt from its manifest with its weights; the class explained is the predicted one.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from pipeline.common.errors import PipelineError
from pipeline.models import ChestXrayNet, build_model
from pipeline.tracking.models import LoadedModel

ALPHA = 0.45  # heat map opacity over the radiograph
COLORMAP = "jet"


def rebuild_net(run_cfg: DictConfig, model: LoadedModel) -> ChestXrayNet:
    """The run's network with the logged model's weights (no download: weights come from MLflow):
    the loaded model's own first network (a cross-validated run's first fold); an older pickled
    model's weights given to the network the run's config builds."""
    groups = getattr(model.module, "groups", None)
    if groups is not None:
        if len(groups) > 1:
            raise PipelineError(
                f"the model at {model.uri} is an ensemble of several runs' models: Grad-CAM "
                "explains one network (pass --model <one member's run id>)")
        return groups[0][0].eval()
    cfg = OmegaConf.create(OmegaConf.to_container(run_cfg, resolve=True))
    cfg.backbone.pretrained = False
    cfg.backbone.weights_path = None
    net = build_model(cfg, len(model.classes))
    state = model.module.state_dict()
    if not state:
        raise PipelineError(
            f"the model at {model.uri} is an ensemble of several runs' models: Grad-CAM explains "
            "one network (pass --model <one member's run id>)")
    # A cross-validated run's model averages its fold networks: explain the first fold's.
    prefix = "nets.0." if any(k.startswith("nets.0.") for k in state) else "net."
    state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    # The SupCon projection is not part of the classifier's forward pass: not exported.
    missing = [k for k in missing if not k.startswith("projector.")]
    if missing or unexpected:
        raise PipelineError(
            f"the logged model at {model.uri} does not fit the network its config builds "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return net.eval()


def grad_cam(net: ChestXrayNet, image: np.ndarray, class_index: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(cam, probabilities) of one uint8 (S, S) image: cam in [0, 1] at (S, S), for
    ``class_index`` (default: the predicted class)."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None]
    with torch.enable_grad():
        feature_map = net.forward_features(x).detach().requires_grad_(True)
        logits = net.classify(feature_map)
        k = int(logits.argmax(dim=1)) if class_index is None else int(class_index)
        (grad,) = torch.autograd.grad(logits[0, k], feature_map)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * feature_map).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=image.shape, mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else torch.zeros_like(cam)
    return cam.numpy(), logits.detach().softmax(dim=1)[0].numpy()


def overlay(gray: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """RGB uint8: the grayscale image with the colour-mapped cam (resized to it) on top."""
    height, width = gray.shape
    if cam.shape != gray.shape:
        cam = np.asarray(Image.fromarray(cam.astype(np.float32)).resize(
            (width, height), Image.Resampling.BILINEAR))
    heat = matplotlib.colormaps[COLORMAP](np.clip(cam, 0.0, 1.0))[..., :3]
    base = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=2)
    out = (1.0 - ALPHA) * base + ALPHA * heat
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def save_overlay(path: Path, gray: np.ndarray, cam: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(gray, cam)).save(path)
    return path
