"""The MLflow store a command works with, opened once per command: the client, its URI, the
experiment its runs go to and the tags every run of this process carries; and the verbs the stages
use on it. Above tracking, nothing calls MLflow itself.

Every entry point goes through here, so a run logged by ``train``, a sweep trial, a re-run or a
selection all land in the same store with the same conventions (``tracking.schema``).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig

from pipeline.common.errors import ConfigError, PipelineError
from pipeline.config import PROJECT_ROOT, state_dir
from pipeline.tracking import fresh_store, record, runs, search
from pipeline.tracking.retrying import RetryingClient
from pipeline.tracking.schema import Role, State, Tag

T = TypeVar("T")
# Without a kind, MLflow 3's UI opens an experiment on its GenAI (traces) overview.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# A tracking server that restarts (or a network that hiccups) is waited for: each HTTP request is
# retried with a growing backoff (2, 4, 8 ... s, at most 60 s apart) for about five minutes.
# Set these in the environment to choose otherwise.
HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
                "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "120"}


@dataclass(frozen=True)
class Store:
    """One MLflow store, as one command uses it."""

    client: Any  # MlflowClient
    uri: str
    experiment_id: str | None  # where runs are created and searched (None: not known yet)
    process_tags: Mapping[str, str]  # host, pid, MLflow's source tags, the project's commit

    @property
    def commit(self) -> str:
        return self.process_tags.get(Tag.GIT_COMMIT, "unknown")

    def at(self, experiment_id: str) -> Store:
        """This store, its runs created and searched in ``experiment_id``."""
        return replace(self, experiment_id=str(experiment_id))

    def experiment_name(self, experiment_id: str | None = None) -> str:
        return self.client.get_experiment(experiment_id or self.experiment_id).name

    # One run: opened, written, read back, ended.
    def open_run(self, role: Role, parent: str | None = None, name: str | None = None, *,
                 raised: Mapping[type[BaseException], State] | None = None, **tags: Any
                 ) -> AbstractContextManager[runs.OpenRun]:
        """A run of ``role`` for the ``with`` block, closed in the state the block ended in."""
        return runs.open_run(self, role, parent, name, raised=raised, **tags)

    def get_run(self, run_id: str) -> Any:
        """The run, or a PipelineError naming the id and the store."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise PipelineError(
                    f"run '{run_id}' is not in the MLflow store at {self.uri}: check the id "
                    "(MLflow UI, or the run_id a command printed) and tracking.uri"
                ) from exc
            raise

    def log(self, run_id: str, metrics: Mapping[str, float] | None = None,
            params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
            step: int = 0) -> None:
        """Metrics (at ``step``), params and tags in as few batches as MLflow takes."""
        record.log_batch(self.client, run_id, metrics or {}, params or {}, tags or {}, step)

    def log_dataset(self, run_id: str, bundle: Any, context: str = "train") -> None:
        """The run's data as an MLflow dataset input (the runs table's Dataset column)."""
        record.log_dataset(self.client, run_id, bundle, context)

    def log_artifacts(self, run_id: str, folder: str | Path, path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path=path)

    def log_artifact(self, run_id: str, file: str | Path) -> None:
        self.client.log_artifact(run_id, str(file))

    def read_artifact(self, run_id: str, path: str, read: Callable[[Path], T]) -> T:
        """``read(local copy)`` of one artifact of the run; MissingArtifact when it has none."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(run_id, path, tmp)
            except (MlflowException, OSError) as exc:
                raise MissingArtifact(f"run '{run_id}' has no {path} artifact") from exc
            return read(Path(local))

    # Runs of this experiment, found by the store's own search (tracking.search).
    def search(self, filter_string: str, order: Sequence[str] = (), max_results: int = 1000
               ) -> list:
        return list(self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                            order_by=list(order), max_results=max_results))

    def first(self, filter_string: str, order: Sequence[str] | None = None) -> Any | None:
        return search.first_run(self.client, [self.experiment_id], filter_string, order)

    def first_per_value(self, filter_string: str, tag: Tag, order: Sequence[str] | None = None
                        ) -> list[tuple[str, Any]]:
        return search.first_per_value(self.client, [self.experiment_id], filter_string, tag,
                                      order)

    def count(self, filter_string: str) -> int:
        return search.count_runs(self.client, [self.experiment_id], filter_string)

    def all(self, filter_string: str) -> Iterator[Any]:
        return search.all_runs(self.client, [self.experiment_id], filter_string)


class MissingArtifact(PipelineError):
    """A run without the artifact asked for."""


def open_store(cfg: DictConfig, missing: str | None = None, create: bool = True) -> Store:
    """The configured store, its experiment ``tracking.experiment`` created on first use (with
    ``create``; else looked up, None when there is none). With ``missing``, the store must exist: a
    SQLite file that is not there gives a PipelineError starting with ``missing`` (opening it would
    create an empty store, taking seconds of schema migrations to find nothing)."""
    uri = tracking_uri(cfg)
    if missing and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")
                                                              ).exists():
        raise PipelineError(
            f"{missing}: there is no MLflow store at {uri} (nothing was logged there; check "
            "state_dir or tracking.uri)"
        )
    mlflow_client = client(cfg)
    if create:
        exp = ensure_experiment(cfg, mlflow_client)
    else:
        found = mlflow_client.get_experiment_by_name(str(cfg.tracking.experiment))
        exp = found.experiment_id if found and found.lifecycle_stage != "deleted" else None
    tags = {**source_tags(), str(Tag.HOST): socket.gethostname(), str(Tag.PID): str(os.getpid())}
    return Store(mlflow_client, uri, exp, tags)


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


def client(cfg: DictConfig):  # -> MlflowClient (import kept lazy: mlflow is slow to import)
    """A client bound to the configured store (also made the process default for mlflow.*).
    A new SQLite store is created whole before any client opens it (tracking.fresh_store), and
    its calls are retried on "database is locked" (tracking.retrying)."""
    for key, value in HTTP_RETRIES.items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    if not fresh_store.is_sqlite(uri):
        use_for_fluent(uri)
        return MlflowClient(tracking_uri=uri)
    deadline, attempt = time.monotonic() + fresh_store.WAIT_S, 0
    while True:
        attempt += 1
        try:
            fresh_store.ready(uri)
            use_for_fluent(uri)
            return RetryingClient(MlflowClient(tracking_uri=uri))
        except Exception as exc:
            if not fresh_store.lost_race(exc):
                raise
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"the MLflow store {uri} could not be opened after {attempt} tries over "
                    f"{fresh_store.WAIT_S:.0f} s ({str(exc).splitlines()[0][:200]}): another "
                    "client left it half created; if it holds no runs yet, delete that file "
                    "and run again"
                ) from exc
            time.sleep(0.5 + random.random())  # the other client's creation is finishing


def use_for_fluent(uri: str) -> None:
    """``uri`` as the store of MLflow's fluent API (``mlflow.start_run``, which logging a model
    needs). mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; the user's environment is
    kept as it was, so a later config in this process still resolves its own store."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def ensure_experiment(cfg: DictConfig, mlflow_client: Any | None = None) -> str:
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
    tags[Tag.SOURCE_NAME] = (main.name.removesuffix(".__main__") if main and main.name
                             else Path(sys.argv[0]).name or "python")
    commit = git_commit()
    tags[Tag.GIT_COMMIT] = commit
    if commit != "unknown":
        tags[Tag.SOURCE_COMMIT] = commit.removesuffix("-dirty")
    return {str(k): str(v) for k, v in tags.items()}


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
