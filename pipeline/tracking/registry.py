"""The MLflow Model Registry side: the selected model registered, the alias ``champion`` on it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.common.errors import PipelineError
from pipeline.common.faults import fault_point, pause
from pipeline.tracking.model_files import MANIFEST
from pipeline.tracking.models import MODEL_PATH, model_uri
from pipeline.tracking.schema import VersionTag
from pipeline.tracking.search import quote

if TYPE_CHECKING:
    from pipeline.tracking.store import Store

CHAMPION = "champion"


def champion_uri(model_name: str) -> str:
    return f"models:/{model_name}@{CHAMPION}"


def register_champion(store: Store, model_name: str, run: Any, tags: Mapping[VersionTag, Any]
                      ) -> str:
    """Register the run's model under ``model_name`` (its existing version when it has one),
    tag the version, point ``champion`` at it; returns the version."""
    from mlflow.exceptions import MlflowException

    mlflow_client = store.client
    run_id = run.info.run_id
    try:
        mlflow_client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = mlflow_client.search_model_versions(
        f"name = {quote(model_name)} AND run_id = {quote(run_id)}", max_results=1
    )
    pause("register_search")  # tests hold the window between the search and the create open
    if existing:
        version = existing[0]
    else:
        source = model_uri(run)
        require_complete(mlflow_client, run_id, source)
        model_id = source.removeprefix("models:/") if source.startswith("models:/") else None
        version = mlflow_client.create_model_version(
            model_name, source=source, run_id=run_id, model_id=model_id
        )
    fault_point("register")
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(model_name, version.version, str(VersionTag(key)),
                                            str(value))
    mlflow_client.set_registered_model_alias(model_name, CHAMPION, version.version)
    return str(version.version)


def require_complete(mlflow_client: Any, run_id: str, source: str) -> None:
    """Only a model whose manifest was written (its upload ended) is registered."""
    if not source.startswith("runs:/"):
        return  # an older logged model (MLflow wrote it whole)
    names = {Path(f.path).name for f in mlflow_client.list_artifacts(run_id, MODEL_PATH)}
    if MANIFEST not in names:
        raise PipelineError(f"run {run_id} has no complete model ({MODEL_PATH}/{MANIFEST} is "
                            "missing: its upload was cut off); it cannot be registered")


def champion_version(store: Store, model_name: str) -> Any:
    """The model version ``<model_name>@champion`` (its tags hold the operating point)."""
    from mlflow.exceptions import MlflowException

    try:
        version = store.client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        raise PipelineError(
            f"no model registered as {model_name}@{CHAMPION} in {store.uri}: "
            "run `python -m pipeline.select_best` first, or pass --model <run id>"
        ) from exc
    return version
