"""MLflow plumbing: which store, which experiment, what a run's params and tags are.

Every entry point goes through here, so a run logged by ``train``, a sweep trial, a re-run or a
selection all land in the same store with the same conventions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.common.errors import ConfigError
from pipeline.config import PROJECT_ROOT, state_dir

# MLflow's own limit on a param value (longer values are refused by the store).
MAX_PARAM_LENGTH = 6000
# Keys that say where things are, not what was trained: not worth a param column each.
SKIPPED_PARAM_PREFIXES = ("select.", "rerun.", "evaluate.", "state_dir", "tracking.uri")
# Without a kind, MLflow 3's UI opens an experiment on its GenAI (traces) overview.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri(cfg: DictConfig) -> str:
    """``tracking.uri``, else MLFLOW_TRACKING_URI, else SQLite under the state dir."""
    uri = cfg.tracking.get("uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return str(uri)
    return f"sqlite:///{state_dir(cfg) / 'mlflow.db'}"


def artifact_root(cfg: DictConfig) -> str | None:
    """Artifacts beside a local SQLite store; a tracking server chooses its own."""
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
        return (state_dir(cfg) / "artifacts").as_uri()
    return None


# A tracking server that restarts (or a network that hiccups) is waited for: each HTTP request is
# retried with a growing backoff (2, 4, 8 ... s, at most 60 s apart) for about five minutes.
# Set these in the environment to choose otherwise.
HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
                "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "120"}


def client(cfg: DictConfig):  # -> MlflowClient (import kept lazy: mlflow is slow to import)
    """A client bound to the configured store (also made the process default for mlflow.*)."""
    for key, value in HTTP_RETRIES.items():
        os.environ.setdefault(key, value)
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; keep the user's environment as
    # it was, so a later config in this process still resolves its own store.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return MlflowClient(tracking_uri=uri)


def experiment_id(cfg: DictConfig, mlflow_client: Any | None = None) -> str:
    """Id of ``tracking.experiment``, created on first use (safe when two workers race)."""
    from mlflow.exceptions import MlflowException

    mc = mlflow_client or client(cfg)
    name = str(cfg.tracking.experiment)
    for _ in range(3):
        exp = mc.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise ConfigError(
                    f"MLflow experiment '{name}' is deleted: restore it in the UI or choose "
                    "another with tracking.experiment=<name>"
                )
            return exp.experiment_id
        try:
            return mc.create_experiment(name, artifact_location=artifact_root(cfg),
                                        tags=EXPERIMENT_TAGS)
        except MlflowException:
            continue  # another worker created it in between: read it back
    raise ConfigError(f"could not create or find MLflow experiment '{name}' at {tracking_uri(cfg)}")


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as ``dotted.key -> value`` strings (MLflow params)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, str] = {}
    for key, value in _flatten(container):
        if key.startswith(SKIPPED_PARAM_PREFIXES):
            continue
        out[key] = str(value)[:MAX_PARAM_LENGTH]
    return out


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def runs_page(experiment: str, base: str = "http://127.0.0.1:5000") -> str:
    """The UI's runs table of an experiment, in its model-training view (MLflow 3 starts in
    the GenAI view, where runs do not show)."""
    return f"{base}/#/experiments/{experiment}/runs?workflowType=machine_learning"


def source_tags() -> dict[str, str]:
    """MLflow's own run context (user, source type, ...) with the entry point as the source
    (the UI's Source column) and the project's commit: what the fluent API would have set."""
    from mlflow.tracking.context.registry import resolve_tags

    tags = resolve_tags()
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    tags["mlflow.source.name"] = (main.name.removesuffix(".__main__") if main and main.name
                                  else Path(sys.argv[0]).name or "python")
    commit = git_commit()
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    return tags


@cache
def git_commit() -> str:
    """The project's commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def run_artifact_dir(run: Any) -> Path | None:
    """Local directory of a run's artifacts, when the store keeps them on this machine."""
    uri = run.info.artifact_uri
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" not in uri:
        return Path(uri)
    return None
