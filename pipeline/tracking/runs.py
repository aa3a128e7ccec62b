"""An MLflow run as every stage writes one: created with the standard tags, params and config,
metrics in batches, an observer that records a training as it goes, closed with its state."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from pipeline.config import to_yaml
from pipeline.data import DataBundle
from pipeline.models import ChestXrayNet
from pipeline.tracking import store

# The state a run ended in, and the MLflow status it closes with. A pruned trial ended as
# designed: FINISHED (as optuna-integration's MLflowCallback logs it), its `state` tag PRUNED;
# KILLED is left to runs that were stopped (Ctrl-C, a dead process).
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
              "INTERRUPTED": "KILLED"}
MAX_TAG_LENGTH = 5000


def log_metrics(mlflow_client: Any, run_id: str, values: Mapping[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
    if metrics:
        mlflow_client.log_batch(run_id, metrics=metrics, synchronous=True)


def start_run(
    cfg: DictConfig,
    bundle: DataBundle,
    mlflow_client: Any,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """A new run with the standard tags (its params, config and split: ``log_setup``)."""

    all_tags = {
        "backbone": str(cfg.backbone.name),
        "dataset": str(cfg.dataset.name),
        "data_fingerprint": bundle.fingerprint,
        "git_commit": store.git_commit(),
        "role": "train",
        "image_size": str(cfg.dataset.image_size),
        "seed": str(cfg.seed),
        # CPU kernels split work by thread count: a re-run repeats the run exactly with as many.
        "torch_threads": str(torch.get_num_threads()),
        **process_tags(),
        **(tags or {}),
    }
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = mlflow_client.create_run(
        store.experiment_id(cfg, mlflow_client), run_name=run_name, tags=all_tags
    )
    return run.info.run_id


def log_setup(cfg: DictConfig, bundle: DataBundle, mlflow_client: Any, run_id: str) -> None:
    """The config as params, the config and split manifest as artifacts, the data as input
    (a failure here, a full disk say, is the run's own: the run exists to carry it)."""
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in store.flat_params(cfg).items()]
    for i in range(0, len(params), 100):  # MLflow's batch limit
        mlflow_client.log_batch(run_id, params=params[i : i + 100], synchronous=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(to_yaml(cfg))
        bundle.write_manifest(Path(tmp) / "split_manifest.csv")
        mlflow_client.log_artifacts(run_id, tmp)
    log_dataset(mlflow_client, run_id, bundle)


def log_dataset(mlflow_client: Any, run_id: str, bundle: DataBundle, context: str = "train"
                ) -> None:
    """The run's data as an MLflow dataset input (the runs table's Dataset column): named after
    ``dataset.name``, its digest the data fingerprint, its source the dataset root."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    if bundle.root is not None:
        with warnings.catch_warnings():  # a local path reads as two kinds of source, both local
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(bundle.root))
    else:
        source = CodeDatasetSource(tags={"generator": "pipeline.data.synthetic"})
    dataset = MetaDataset(source, name=bundle.name, digest=bundle.fingerprint)
    mlflow_client.log_inputs(run_id, datasets=[DatasetInput(
        dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])])


def process_tags() -> dict[str, str]:
    """Which process writes a run: a run left RUNNING by a process that is gone is closed; and
    MLflow's own source tags, the entry point and commit the UI shows."""
    return {**store.source_tags(), "host": socket.gethostname(), "pid": str(os.getpid())}


def process_alive(pid: str) -> bool:
    """Whether a process of this machine with that id still runs (no id given: yes)."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_dead_runs(mlflow_client: Any, experiment_id: str,
                    roles: tuple[str, ...] = ("train", "rerun", "selection", "ensemble",
                                              "external")) -> int:
    """Runs of ``roles`` left RUNNING by a process of this machine that died (a kill -9): closed
    KILLED with the reason. (Sweep trials and study runs are the sweep's to close.)"""
    from pipeline.tracking.search import all_runs, where

    found = list(all_runs(mlflow_client, [experiment_id], where(
        "attributes.status = 'RUNNING'", host=socket.gethostname())))
    closed = 0
    for run in found:
        tags = run.data.tags
        if tags.get("role") in roles and not process_alive(tags.get("pid", "")):
            close_run(mlflow_client, run.info.run_id, "INTERRUPTED",
                      f"its process (pid {tags.get('pid')}) died before the run ended")
            closed += 1
    return closed


def close_run(mlflow_client: Any, run_id: str, state: str, error: str | None = None) -> None:
    """Tag the run's state (and error, also as its note) and terminate it with its status."""
    tags = {"state": state}
    if error:
        tags["error"] = error[:MAX_TAG_LENGTH]
        tags["mlflow.note.content"] = error[:MAX_TAG_LENGTH]
    for key, value in tags.items():
        mlflow_client.set_tag(run_id, key, value)
    mlflow_client.set_terminated(run_id, status=RUN_STATUS[state])


class RunObserver:
    """A training as it goes, into its run: the weights and parameter counts once the network is
    built, what the feature cache serves, every epoch's metrics at step = epoch."""

    def __init__(self, mlflow_client: Any, run_id: str):
        self.client = mlflow_client
        self.run_id = run_id

    def network(self, net: ChestXrayNet, feature_cache: str) -> None:
        self.client.set_tag(self.run_id, "weights", net.weights)
        log_metrics(self.client, self.run_id, {"trainable_params": net.trainable_params(),
                                               "total_params": net.total_params()}, 0)
        self.client.set_tag(self.run_id, "feature_cache", feature_cache)

    def epoch(self, step: int, values: Mapping[str, float]) -> None:
        log_metrics(self.client, self.run_id, values, step)
