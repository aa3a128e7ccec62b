"""Predict image files with a logged model: the registered champion or a run's model.

Images are decoded by ``pipeline.data.images.decode_image`` at the model's ``image_size`` (from its
metadata), exactly as training saw them. The champion is served as its selection described and
tested it: its networks' probabilities calibrated by its stored temperature and averaged
(``evidence.calibration.Calibration``), the label decided at its stored threshold on that scale
(``evidence.metrics.predicted``). Each image gives one result in input order: a label and its
probabilities, or the reason it could not be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from pipeline.common.errors import PipelineError
from pipeline.data.images import UnreadableImage, decode_image
from pipeline.evidence.calibration import Calibration
from pipeline.evidence.metrics import predicted
from pipeline.tracking.models import LoadedModel, allow_pickle, load_model, model_uri
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


@dataclass
class Served:
    """A logged model as it is served: its calibration and operating point applied."""

    model: LoadedModel
    run_id: str
    calibration: Calibration = field(default_factory=Calibration)
    note: str | None = None  # what the caller should tell the user about how it is served

    @property
    def positive(self) -> int | None:
        classes = self.model.classes
        return classes.index(self.model.positive_class) if self.model.positive_class in classes \
            else None

    def networks(self, images: torch.Tensor) -> np.ndarray:
        """(n, N, classes) each network's unscaled probabilities."""
        return self.model.network_probabilities(images).numpy()

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """(N, classes) the served probabilities."""
        return self.calibration.probabilities(self.networks(images))

    def labels(self, probs: np.ndarray) -> np.ndarray:
        return predicted(probs, self.positive, self.calibration.threshold)


def _number(tags: dict, key: VersionTag) -> float | None:
    value = tags.get(key)
    return None if value in (None, "", "none") else float(value)


def champion_calibration(tags: dict) -> tuple[Calibration, str | None]:
    """The stored calibration and threshold of a registered version, and a note when it predates
    served calibration (a temperature that its threshold was not chosen with: not applied)."""
    temperature, threshold = _number(tags, VersionTag.TEMPERATURE), _number(tags,
                                                                              VersionTag.THRESHOLD)
    scope = tags.get(VersionTag.TEMPERATURE_SCOPE)
    if temperature is not None and scope is None:
        return Calibration(None, threshold), (
            "this champion was registered before its temperature was served: its threshold was "
            "chosen on unscaled probabilities, so it is served unscaled (run "
            "python -m pipeline.select_best again to serve it calibrated)")
    if scope not in (None, "network"):
        raise PipelineError(f"the champion's temperature_scope tag is {scope!r}: this version "
                            "serves 'network' only (run python -m pipeline.select_best again)")
    return Calibration(temperature, threshold), None


def resolve_model(store: Store, cfg: DictConfig, spec: str) -> Served:
    """The model of ``--model``: ``champion`` (served with the calibration and threshold its
    selection chose on validation) or a run id (its unscaled probabilities, most probable
    class)."""
    if spec == CHAMPION:
        name = str(cfg.select.model_name)
        version = champion_version(store, name)
        calibration, note = champion_calibration(dict(version.tags))
        return Served(load_model(champion_uri(name), store.uri, allow_pickle(cfg)),
                      str(version.run_id), calibration, note)
    run = store.get_run(spec)
    return Served(load_model(model_uri(run), store.uri, allow_pickle(cfg)), run.info.run_id)


@dataclass
class Prediction:
    image: str
    label: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    pixels: np.ndarray | None = None  # the decoded (S, S) uint8 image
    temperature: float | None = None
    threshold: float | None = None
    first_network: np.ndarray | None = None  # the first network's unscaled probabilities

    def as_json(self) -> dict:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "label": self.label, "probabilities": self.probabilities,
                "temperature": self.temperature, "threshold": self.threshold}


def predict_files(served: Served, paths: Sequence[str]) -> Iterator[Prediction]:
    """One Prediction per path, in order, ``BATCH`` images at a time: the served probabilities
    and the label at the served operating point."""
    model, cal = served.model, served.calibration
    for start in range(0, len(paths), BATCH):
        chunk = [_decode(path, model.image_size) for path in paths[start : start + BATCH]]
        readable = [p for p in chunk if p.error is None]
        if readable:
            networks = served.networks(torch.from_numpy(np.stack([p.pixels for p in readable])))
            probs = cal.probabilities(networks)
            labels = served.labels(probs)
            for i, pred in enumerate(readable):
                pred.probabilities = {c: float(v) for c, v in zip(model.classes, probs[i],
                                                                  strict=True)}
                pred.label = model.classes[int(labels[i])]
                pred.temperature, pred.threshold = cal.temperature, cal.threshold
                pred.first_network = networks[0, i]
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
