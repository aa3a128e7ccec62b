"""An ensemble as one MLflow model: a pyfunc that loads its member models (logged PyTorch models,
copied in as artifacts) and predicts the mean of their class probabilities. Loaded like any
logged model (``load_model``), so ``pipeline.predict`` serves an ensemble champion as it is."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import mlflow
import numpy as np
import torch


class MeanOfMembers(mlflow.pyfunc.PythonModel):
    """float images (B, 1, S, S) in [0, 255] -> the members' mean probabilities (B, classes)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.members = [mlflow.pytorch.load_model(context.artifacts[k], map_location="cpu")
                        for k in sorted(context.artifacts)]

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: np.ndarray,
                params: dict | None = None) -> np.ndarray:
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            return torch.stack([m(x).float() for m in self.members]).mean(dim=0).numpy()


def log_ensemble(run_id: str, member_uris: Sequence[str], classes: Sequence[str],
                 image_size: int, positive_class: str | None, tracking_uri: str) -> None:
    """The ensemble of ``member_uris`` as the run's model (``name="model"``), in the store at
    ``tracking_uri``."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from pipeline.tracking.store import use_for_fluent

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, image_size, image_size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(classes)))]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {}
        for i, uri in enumerate(member_uris):
            dest = Path(tmp) / f"member{i:02d}"
            dest.mkdir()
            artifacts[f"member{i:02d}"] = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dest), tracking_uri=tracking_uri,
                registry_uri=tracking_uri)
        metadata = {"classes": list(classes), "image_size": int(image_size),
                    "positive_class": positive_class, "members": list(member_uris),
                    "folds": 1}
        use_for_fluent(tracking_uri)
        with mlflow.start_run(run_id=run_id, nested=True):
            mlflow.pyfunc.log_model(
                name="model", python_model=MeanOfMembers(), artifacts=artifacts,
                signature=signature, metadata=metadata,
                input_example=np.zeros((1, 1, image_size, image_size), dtype=np.float32),
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                  f"mlflow=={mlflow.__version__}"],
            )


class PyfuncModule:
    """A loaded pyfunc model called like the PyTorch ones: tensor in, probability tensor out."""

    def __init__(self, model: mlflow.pyfunc.PyFuncModel):
        self.model = model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.model.predict(x.numpy()), dtype=np.float32))

    def state_dict(self) -> dict:
        return {}  # no single network to rebuild (Grad-CAM needs one)
