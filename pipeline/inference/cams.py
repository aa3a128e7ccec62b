"""Grad-CAM overlays of predicted images, one PNG each, from the run's rebuilt network."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from pipeline.data.images import decode_image
from pipeline.inference.gradcam import grad_cam, save_overlay
from pipeline.inference.prediction import Prediction, cam_path
from pipeline.models import ChestXrayNet
from pipeline.tracking.models import LoadedModel

CAM_DISPLAY_SIZE = 256  # overlays are drawn at least this large


class CamWriter:
    """Writes ``<dir>/<image stem>_gradcam.png`` per prediction (numbered when stems repeat)."""

    def __init__(self, net: ChestXrayNet, model: LoadedModel, cam_dir: Path):
        self.net = net
        self.model = model
        self.cam_dir = cam_dir
        self.used: set[Path] = set()

    def write(self, pred: Prediction) -> Path:
        cam, probs = grad_cam(self.net, pred.pixels)  # the first network's, unscaled
        if not np.allclose(probs, pred.first_network, atol=1e-4):
            print(f"warning: the rebuilt network disagrees with the logged model on "
                  f"{pred.image}", file=sys.stderr)
        size = max(self.model.image_size, CAM_DISPLAY_SIZE)
        return save_overlay(cam_path(self.cam_dir, pred.image, self.used),
                            decode_image(pred.image, size), cam)
