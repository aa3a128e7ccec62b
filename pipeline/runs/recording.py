"""What a training leaves in its run: the tags that say what it trained, its config, split and data
before it starts, every epoch as it goes, and once it is done the best epoch's scores under their
own names, the figures and reports, the validation predictions, and the model."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from pipeline.config import to_yaml
from pipeline.data.bundle import DataBundle
from pipeline.models import ChestXrayNet
from pipeline.tracking.logged import CONFIG
from pipeline.tracking.models import log_model
from pipeline.tracking.record import flat_params
from pipeline.tracking.schema import Tag
from pipeline.tracking.search import best_of
from pipeline.tracking.store import Store
from pipeline.training.fit import Fitted
from pipeline.training.reports import write_curves, write_reports

# The validation predictions a run leaves: selection chooses its operating point and fits its
# temperature on them (out-of-fold ones for a cross-validated run), never on test.
VAL_PREDICTIONS = "val_predictions.csv"
SPLIT_MANIFEST = "split_manifest.csv"


def training_tags(cfg: DictConfig, bundle: DataBundle) -> dict[Tag, str]:
    """What a training run trained, on what: the tags a selection and a re-run look for."""
    return {
        Tag.BACKBONE: str(cfg.backbone.name),
        Tag.DATASET: str(cfg.dataset.name),
        Tag.DATA_FINGERPRINT: bundle.fingerprint,
        Tag.IMAGE_SIZE: str(cfg.dataset.image_size),
        Tag.SEED: str(cfg.seed),
        # CPU kernels split work by thread count: a re-run repeats the run exactly with as many.
        Tag.TORCH_THREADS: str(torch.get_num_threads()),
    }


def log_setup(cfg: DictConfig, bundle: DataBundle, store: Store, run_id: str) -> None:
    """The config as params, the config and split manifest as artifacts, the data as input
    (a failure here, a full disk say, is the run's own: the run exists to carry it)."""
    store.log(run_id, params=flat_params(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / CONFIG).write_text(to_yaml(cfg))
        bundle.write_manifest(Path(tmp) / SPLIT_MANIFEST)
        store.log_artifacts(run_id, tmp)
    store.log_dataset(run_id, bundle)


class RunObserver:
    """A training as it goes, into its run: the weights and parameter counts once the network is
    built, what the feature cache serves, every epoch's metrics at step = epoch."""

    def __init__(self, store: Store, run_id: str):
        self.store = store
        self.run_id = run_id

    def network(self, net: ChestXrayNet, feature_cache: str) -> None:
        self.store.log(self.run_id, metrics={"trainable_params": net.trainable_params(),
                                             "total_params": net.total_params()},
                       tags={Tag.WEIGHTS: net.weights, Tag.FEATURE_CACHE: feature_cache})

    def epoch(self, step: int, values: Mapping[str, float]) -> None:
        self.store.log(self.run_id, metrics=values, step=step)


def predictions_frame(bundle: DataBundle, rows: np.ndarray, probs: np.ndarray,
                      folds: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per image: file, patient, label (its class index), fold, a probability per class."""
    frame = pd.DataFrame({
        "file": pd.Series([bundle.files[r] for r in rows], dtype=object),
        "patient": pd.Series(bundle.patients[rows].tolist(), dtype=object),
        "label": bundle.labels[rows].astype(np.int64),
        "fold": list(folds) if folds is not None else [0] * len(rows),
    })
    for k, name in enumerate(bundle.classes):
        frame[f"p_{name}"] = probs[:, k]
    return frame


def write_outputs(out: Path, bundle: DataBundle, val: pd.DataFrame,
                  history: Mapping[str, Sequence[float]],
                  test: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Curves, the validation (and test) reports and the validation predictions, into ``out``."""
    positive = bundle.classes.index(bundle.positive_class) if bundle.positive_class else None
    write_curves(out, history)
    probs = val[[f"p_{c}" for c in bundle.classes]].to_numpy()
    write_reports(out, probs, val["label"].to_numpy(), bundle.classes, positive, "")
    if test is not None:
        write_reports(out, test[0], test[1], bundle.classes, positive, "test_")
    val.to_csv(out / VAL_PREDICTIONS, index=False, lineterminator="\n",
               errors="surrogateescape")


def record_fit(cfg: DictConfig, bundle: DataBundle, store: Store, run_id: str,
               fitted: Fitted) -> dict[str, float]:
    """One fit into its run. The best epoch's validation scores go under their own names
    (``best_val_auroc``), apart from the per-epoch ``val_*`` values, so nothing ranks on "the
    last value logged"."""
    final = {(best_of(k) if k.startswith("val_") else k): v for k, v in fitted.metrics.items()}
    store.log(run_id, metrics={**final, "best_epoch": fitted.best_epoch}, step=fitted.epochs)
    val = predictions_frame(bundle, bundle.indices("val"), fitted.predictions["val"][0])
    with tempfile.TemporaryDirectory(prefix=f"run-{run_id}-") as tmp:
        write_outputs(Path(tmp), bundle, val, fitted.history, fitted.predictions.get("test"))
        store.log_artifacts(run_id, tmp)
    if cfg.tracking.get("log_model", True):
        log_model([fitted.net], cfg, bundle, run_id, store)
    return fitted.metrics
