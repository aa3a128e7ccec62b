"""The tracking stage: the MLflow store, runs searched and read back, models logged and loaded,
the registry, and one training recorded as one run."""

from pipeline.tracking.store import (
    artifact_root,
    client,
    experiment_id,
    flat_params,
    git_commit,
    run_artifact_dir,
    runs_page,
    tracking_uri,
)

__all__ = [
    "artifact_root",
    "client",
    "experiment_id",
    "flat_params",
    "git_commit",
    "run_artifact_dir",
    "runs_page",
    "tracking_uri",
]
