"""What a run is given, in MLflow's terms: metrics, params and tags in batches, the resolved config
as params, the data as a dataset input."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.common.urls import redact
from pipeline.data.bundle import DataBundle

# MLflow's own limits: a param value's length, and what one log_batch takes.
MAX_PARAM_LENGTH = 6000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
# Keys that say where things are, not what was trained: not worth a param column each.
SKIPPED_PARAM_PREFIXES = ("select.", "rerun.", "evaluate.", "state_dir", "tracking.uri")


def log_batch(mlflow_client: Any, run_id: str, metrics: Mapping[str, float],
              params: Mapping[str, Any], tags: Mapping[str, Any], step: int = 0) -> None:
    """Metrics at ``step``, params and tags, in as few ``log_batch`` calls as MLflow takes."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    ms = [Metric(str(k), float(v), now, step) for k, v in metrics.items()]
    # A config value or a command line may hold a URL with its password: never stored.
    ps = [Param(str(k), redact(str(v))) for k, v in params.items()]
    ts = [RunTag(str(k), redact(str(v))) for k, v in tags.items()]
    while ms or ps or ts:
        p, ps = ps[:MAX_PARAMS_TAGS_PER_BATCH], ps[MAX_PARAMS_TAGS_PER_BATCH:]
        t, ts = ts[:MAX_PARAMS_TAGS_PER_BATCH], ts[MAX_PARAMS_TAGS_PER_BATCH:]
        room = MAX_ENTITIES_PER_BATCH - len(p) - len(t)
        m, ms = ms[:room], ms[room:]
        mlflow_client.log_batch(run_id, metrics=m, params=p, tags=t, synchronous=True)


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as ``dotted.key -> value`` strings (MLflow params)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, str] = {}
    for key, value in _flatten(container):
        if key.startswith(SKIPPED_PARAM_PREFIXES):
            continue
        out[key] = redact(str(value))[:MAX_PARAM_LENGTH]
    return out


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


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
