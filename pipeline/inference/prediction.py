"""Predict image files with a logged model: the registered champion or a run's model.

Images are decoded by ``pipeline.data.images.decode_image`` at the model's ``image_size`` (from its
metadata), exactly as training saw them. Each image gives one result in input order: a label and
its probabilities, or the reason it could not be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from pipeline.data.images import UnreadableImage, decode_image
from pipeline.tracking.models import LoadedModel, load_model, model_uri
from pipeline.tracking.registry import CHAMPION, champion_uri, champion_version
from pipeline.tracking.schema import VersionTag
from pipeline.tracking.store import Store

BATCH = 32
_OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.]*(=|$)")


def split_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(images, hydra overrides): an argument is an override when it reads ``key=value``
    (``+key=``, ``~key``) and is not an existing file."""
    images, overrides = [], []
    for arg in args:
        is_override = bool(_OVERRIDE.match(arg)) and ("=" in arg or arg.startswith("~"))
        (overrides if is_override and not Path(arg).exists() else images).append(arg)
    return images, overrides


def resolve_model(store: Store, cfg: DictConfig, spec: str
                  ) -> tuple[LoadedModel, str, float | None]:
    """(model, run id, decision threshold) of ``--model``: ``champion`` (with the threshold its
    selection chose on validation, for a binary task) or a run id (most probable class)."""
    if spec == CHAMPION:
        name = str(cfg.select.model_name)
        version = champion_version(store, name)
        threshold = version.tags.get(VersionTag.THRESHOLD)
        return (load_model(champion_uri(name), store.uri), str(version.run_id),
                float(threshold) if threshold else None)
    run = store.get_run(spec)
    return load_model(model_uri(run), store.uri), run.info.run_id, None


@dataclass
class Prediction:
    image: str
    label: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    pixels: np.ndarray | None = None  # the decoded (S, S) uint8 image

    def as_json(self) -> dict:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "label": self.label, "probabilities": self.probabilities}


def predict_files(model: LoadedModel, paths: Sequence[str], threshold: float | None = None
                  ) -> Iterator[Prediction]:
    """One Prediction per path, in order, ``BATCH`` images at a time; with ``threshold`` (a
    binary model's operating point) the label is the positive class when its probability
    reaches it."""
    positive = (model.classes.index(model.positive_class)
                if threshold is not None and model.positive_class in model.classes else None)
    for start in range(0, len(paths), BATCH):
        chunk = [_decode(path, model.image_size) for path in paths[start : start + BATCH]]
        readable = [p for p in chunk if p.error is None]
        if readable:
            images = torch.from_numpy(np.stack([p.pixels for p in readable]))
            probs = model.predict(images).numpy()
            for pred, row in zip(readable, probs, strict=True):
                pred.probabilities = {c: float(v) for c, v in zip(model.classes, row, strict=True)}
                label = int(row.argmax())
                if positive is not None and len(model.classes) == 2:
                    label = positive if row[positive] >= threshold else 1 - positive
                pred.label = model.classes[label]
        yield from chunk


def _decode(path: str, size: int) -> Prediction:
    try:
        return Prediction(image=path, pixels=decode_image(path, size))
    except UnreadableImage as exc:
        return Prediction(image=path, error=exc.reason)


def cam_path(cam_dir: Path, image: str, used: set[Path]) -> Path:
    """``<cam_dir>/<image stem>_gradcam.png``, numbered when two images share a stem."""
    stem = Path(image).stem or "image"
    path, n = cam_dir / f"{stem}_gradcam.png", 1
    while path in used:
        n += 1
        path = cam_dir / f"{stem}_{n}_gradcam.png"
    used.add(path)
    return path
