"""A logged model on the held-out test split of the data it was trained on.

The model is the one MLflow holds (not a rebuilt network), the data is rebuilt from the run's own
logged config and must have the run's fingerprint: a test score of other data is no test score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from pipeline.common.errors import DataError
from pipeline.data.bundle import DataBundle, load_data
from pipeline.evidence.metrics import nll
from pipeline.runs.recording import VAL_PREDICTIONS
from pipeline.tracking.logged import Logged, as_logged, local_config, read_logged
from pipeline.tracking.models import LoadedModel, load_model, model_uri
from pipeline.tracking.schema import Tag
from pipeline.tracking.store import MissingArtifact, Store
from pipeline.training.metrics import score


@dataclass
class Evaluation:
    run_id: str
    metrics: dict[str, float]  # test_accuracy, test_auroc, ... and test_loss (at argmax)
    probs: np.ndarray  # (N, classes)
    target: np.ndarray  # (N,)
    files: list[str]  # the test images, relative to the dataset root
    classes: list[str]
    positive_index: int | None
    patients: list[str] = field(default_factory=list)  # of the test images, for the bootstrap
    val_probs: np.ndarray | None = None  # validation (a cross-validated run's out-of-fold)
    val_target: np.ndarray | None = None
    data: dict = field(default_factory=dict)  # the data's summary (describe_data's JSON)
    on_duplicate: str = "group"
    model: LoadedModel | None = None
    root: Path | None = None  # the dataset's root: the test images are root / files
    pixels: np.ndarray | None = None  # (N, S, S) uint8: the test images as the model saw them
    config: DictConfig | None = None  # the run's config, as logged

    def predictions(self) -> pd.DataFrame:
        """One row per test image: file, true label, predicted label, a probability per class."""
        frame = pd.DataFrame({
            "file": self.files,
            "label": [self.classes[i] for i in self.target],
            "predicted": [self.classes[i] for i in self.probs.argmax(axis=1)],
        })
        for k, name in enumerate(self.classes):
            frame[f"p_{name}"] = self.probs[:, k]
        return frame


def run_data(logged: Logged, cfg: DictConfig, overrides: Sequence[str] = ()) -> DataBundle:
    """The data a run was trained on, rebuilt here from its logged config; DataError when its
    fingerprint differs."""
    run, bundle = logged.run, load_data(local_config(logged, cfg, overrides))
    fingerprint = run.data.tags.get(Tag.DATA_FINGERPRINT)
    if fingerprint and bundle.fingerprint != fingerprint:
        raise DataError(
            f"run {run.info.run_id} was trained on data with fingerprint {fingerprint}, but its "
            f"dataset config gives {bundle.fingerprint} here: the data on disk changed (or pass "
            "the dataset.* overrides that say where its data is)"
        )
    return bundle


def evaluate_model(model: LoadedModel, bundle: DataBundle, run_id: str) -> Evaluation:
    """Test-split probabilities of ``model`` and their metrics, named ``test_*``."""
    if list(model.classes) != list(bundle.classes):
        raise DataError(
            f"the model of run {run_id} predicts {model.classes} but its data has classes "
            f"{bundle.classes}"
        )
    rows = bundle.indices("test")
    if not len(rows):
        raise DataError(f"the data of run {run_id} has no test split: nothing to evaluate")
    images = torch.from_numpy(np.asarray(bundle.images[rows], dtype=np.uint8))
    probs = model.predict(images).numpy()
    target = np.asarray(bundle.labels[rows], dtype=np.int64)
    positive_index = (
        bundle.classes.index(bundle.positive_class) if bundle.positive_class else None
    )
    metrics = score(torch.from_numpy(probs), torch.from_numpy(target), positive_index, "test_")
    metrics["test_loss"] = nll(probs, target)
    return Evaluation(
        run_id=run_id, metrics=metrics, probs=probs, target=target,
        files=[bundle.files[i] for i in rows], classes=list(bundle.classes),
        positive_index=positive_index, patients=[str(p) for p in bundle.patients[rows]],
        pixels=images.numpy(),
    )


def validation_predictions(store: Store, run_id: str, model: LoadedModel,
                           bundle: DataBundle) -> tuple[np.ndarray, np.ndarray]:
    """The validation predictions the run logged (out-of-fold ones for a cross-validated run);
    for a run that logged none, the model's on the validation split. Never test."""
    try:
        frame = store.read_artifact(run_id, VAL_PREDICTIONS, pd.read_csv)
    except (MissingArtifact, OSError):
        frame = None
    if frame is not None:
        return (frame[[f"p_{c}" for c in bundle.classes]].to_numpy(dtype=np.float64),
                frame["label"].to_numpy(dtype=np.int64))
    rows = bundle.indices("val")
    images = torch.from_numpy(np.asarray(bundle.images[rows], dtype=np.uint8))
    return model.predict(images).numpy(), np.asarray(bundle.labels[rows], dtype=np.int64)


def evaluate_run(store: Store, run: Any, cfg: DictConfig,
                 overrides: Sequence[str] = ()) -> Evaluation:
    """Load the run's logged model and score it once on its data's test split (its config read
    once, and kept with the evaluation)."""
    logged = read_logged(store, run)
    with as_logged(logged.run_id):
        bundle = run_data(logged, cfg, overrides)
        model = load_model(model_uri(logged.run), store.uri)
        evaluation = evaluate_model(model, bundle, logged.run_id)
        evaluation.val_probs, evaluation.val_target = validation_predictions(
            store, logged.run_id, model, bundle)
        evaluation.on_duplicate = str(logged.config.dataset.get("on_duplicate", "group"))
    evaluation.data = bundle.summary()
    evaluation.model = model
    evaluation.root = bundle.root
    evaluation.config = logged.config
    return evaluation
