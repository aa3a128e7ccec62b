"""A logged model on the held-out test split of the data it was trained on.

The model is the one MLflow holds (not a rebuilt network), the data is rebuilt from the run's own
logged config and must have the run's fingerprint: a test score of other data is no test score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from pipeline.config.errors import DataError
from pipeline.data import DataBundle, load_data
from pipeline.tracking.logged import local_config, logged_config
from pipeline.tracking.models import LoadedModel, load_model, model_uri
from pipeline.training.metrics import score


@dataclass
class Evaluation:
    run_id: str
    metrics: dict[str, float]  # test_accuracy, test_auroc, ... and test_loss
    probs: np.ndarray  # (N, classes)
    target: np.ndarray  # (N,)
    files: list[str]  # the test images, relative to the dataset root
    classes: list[str]
    positive_index: int | None

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


def run_data(mlflow_client: Any, run: Any, cfg: DictConfig,
             overrides: Sequence[str] = ()) -> DataBundle:
    """The data a run was trained on, rebuilt here; DataError when its fingerprint differs."""
    run_cfg = local_config(logged_config(mlflow_client, run.info.run_id), cfg, overrides)
    bundle = load_data(run_cfg)
    logged = run.data.tags.get("data_fingerprint")
    if logged and bundle.fingerprint != logged:
        raise DataError(
            f"run {run.info.run_id} was trained on data with fingerprint {logged}, but its dataset "
            f"config gives {bundle.fingerprint} here: the data on disk changed (or pass the "
            "dataset.* overrides that say where its data is)"
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
    metrics["test_loss"] = float(
        torch.nn.functional.nll_loss(
            torch.from_numpy(np.log(np.clip(probs, 1e-12, None))), torch.from_numpy(target)
        )
    )
    return Evaluation(
        run_id=run_id, metrics=metrics, probs=probs, target=target,
        files=[bundle.files[i] for i in rows], classes=list(bundle.classes),
        positive_index=positive_index,
    )


def evaluate_run(mlflow_client: Any, run: Any, cfg: DictConfig,
                 overrides: Sequence[str] = ()) -> Evaluation:
    """Load the run's logged model and score it once on its data's test split."""
    bundle = run_data(mlflow_client, run, cfg, overrides)
    return evaluate_model(load_model(model_uri(run)), bundle, run.info.run_id)
