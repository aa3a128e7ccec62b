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
from pipeline.data.bundle import DataBundle
from pipeline.runs.development import run_data
from pipeline.runs.recording import VAL_PREDICTIONS
from pipeline.tracking.logged import as_logged, read_logged
from pipeline.tracking.models import LoadedModel, allow_pickle, load_model, model_uri
from pipeline.tracking.store import MissingArtifact, Store


@dataclass
class Evaluation:
    run_id: str
    networks: np.ndarray  # (n, N, classes): each network's test probabilities (fold, member)
    target: np.ndarray  # (N,)
    files: list[str]  # the test images, relative to the dataset root
    classes: list[str]
    positive_index: int | None
    patients: list[str] = field(default_factory=list)  # of the test images, for the bootstrap
    # Validation, per network, of the same images (n, M, classes): a single or cross-validated
    # run has one array (out-of-fold: each image by the fold network that never trained on it),
    # an ensemble one per member.
    val_networks: np.ndarray | None = None
    val_target: np.ndarray | None = None
    val_folds: np.ndarray | None = None  # (M,) the fold of each validation image (0: no CV)
    val_files: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # the data's summary (describe_data's JSON)
    on_duplicate: str = "group"
    model: LoadedModel | None = None
    root: Path | None = None  # the dataset's root: the test images are root / files
    pixels: np.ndarray | None = None  # (N, S, S) uint8: the test images as the model saw them
    config: DictConfig | None = None  # the run's config, as logged

    @property
    def probs(self) -> np.ndarray:
        """(N, classes) the model's own (unscaled) test probabilities: its networks' mean."""
        return self.networks.mean(axis=0)

    @property
    def val_probs(self) -> np.ndarray | None:
        return None if self.val_networks is None else self.val_networks.mean(axis=0)

    def predictions(self, probs: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
        """One row per test image: file, patient, true label, the label given at the operating
        point, a (served) probability per class."""
        frame = pd.DataFrame({
            "file": self.files,
            "patient": self.patients,
            "label": [self.classes[i] for i in self.target],
            "predicted": [self.classes[i] for i in labels],
        })
        for k, name in enumerate(self.classes):
            frame[f"p_{name}"] = probs[:, k]
        return frame


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
    networks = model.network_probabilities(images).numpy()
    target = np.asarray(bundle.labels[rows], dtype=np.int64)
    positive_index = (
        bundle.classes.index(bundle.positive_class) if bundle.positive_class else None
    )
    return Evaluation(
        run_id=run_id, networks=networks, target=target,
        files=[bundle.files[i] for i in rows], classes=list(bundle.classes),
        positive_index=positive_index, patients=[str(p) for p in bundle.patients[rows]],
        pixels=images.numpy(),
    )


def validation_predictions(store: Store, run_id: str, bundle: DataBundle) -> pd.DataFrame:
    """The validation predictions the run logged (out-of-fold ones for a cross-validated run:
    each image by the fold network that never trained on it). Never test; never made up."""
    try:
        return store.read_artifact(run_id, VAL_PREDICTIONS,
                                   lambda p: pd.read_csv(p, keep_default_na=False))
    except (MissingArtifact, OSError) as exc:
        raise DataError(
            f"run {run_id} has no {VAL_PREDICTIONS}: its operating point and temperature would "
            "have to be chosen on other predictions than its own validation ones (train it again "
            "with this version)") from exc


def with_validation(ev: Evaluation, frame: pd.DataFrame) -> Evaluation:
    """``ev`` with the validation predictions of ``frame`` (a logged val_predictions.csv)."""
    ev.val_networks = frame[[f"p_{c}" for c in ev.classes]].to_numpy(dtype=np.float64)[None]
    ev.val_target = frame["label"].to_numpy(dtype=np.int64)
    ev.val_folds = (frame["fold"].to_numpy(dtype=np.int64) if "fold" in frame
                    else np.zeros(len(frame), dtype=np.int64))
    ev.val_files = [str(f) for f in frame["file"]]
    return ev


def evaluate_run(store: Store, run: Any, cfg: DictConfig,
                 overrides: Sequence[str] = ()) -> Evaluation:
    """Load the run's logged model and score it once on its data's test split (its config read
    once, and kept with the evaluation)."""
    logged = read_logged(store, run)
    with as_logged(logged.run_id):
        bundle = run_data(logged, cfg, overrides)
        model = load_model(model_uri(logged.run), store.uri, allow_pickle(cfg))
        evaluation = with_validation(evaluate_model(model, bundle, logged.run_id),
                                     validation_predictions(store, logged.run_id, bundle))
        evaluation.on_duplicate = str(logged.config.dataset.get("on_duplicate", "group"))
    evaluation.data = bundle.summary()
    evaluation.model = model
    evaluation.root = bundle.root
    evaluation.config = logged.config
    return evaluation
