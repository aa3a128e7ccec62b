"""What a finished training leaves in its run: the best epoch's scores under their own names,
the figures and reports, the validation predictions, and the model."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline.common.faults import fault_point
from pipeline.data import DataBundle
from pipeline.tracking.models import log_model
from pipeline.tracking.runs import log_metrics
from pipeline.tracking.search import best_of
from pipeline.training.fit import Fitted
from pipeline.training.reports import write_curves, write_reports

# The validation predictions a run leaves: selection chooses its operating point and fits its
# temperature on them (out-of-fold ones for a cross-validated run), never on test.
VAL_PREDICTIONS = "val_predictions.csv"


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


def record_fit(cfg: DictConfig, bundle: DataBundle, mlflow_client: Any, run_id: str,
               fitted: Fitted) -> dict[str, float]:
    """One fit into its run. The best epoch's validation scores go under their own names
    (``best_val_auroc``), apart from the per-epoch ``val_*`` values, so nothing ranks on "the
    last value logged"."""
    final = {(best_of(k) if k.startswith("val_") else k): v for k, v in fitted.metrics.items()}
    log_metrics(mlflow_client, run_id, {**final, "best_epoch": fitted.best_epoch}, fitted.epochs)
    val = predictions_frame(bundle, bundle.indices("val"), fitted.predictions["val"][0])
    with tempfile.TemporaryDirectory(prefix=f"run-{run_id}-") as tmp:
        write_outputs(Path(tmp), bundle, val, fitted.history, fitted.predictions.get("test"))
        mlflow_client.log_artifacts(run_id, tmp)
    fault_point("log_model")
    if cfg.tracking.get("log_model", True):
        log_model([fitted.net], bundle, run_id)
    return fitted.metrics
