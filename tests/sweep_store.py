"""MLflow stores for the selection, re-run and predict tests.

``sweep_store``: real tiny sweep trials over two backbones (``run_training`` with the tags a sweep
sets), built once per test process, plus runs that must never compete. ``write_runs``: thousands
of runs without training, through MlflowClient or straight into MLflow's own tables.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric
from omegaconf import DictConfig

from pipeline.config import PROJECT_ROOT, compose
from pipeline.tracking.store import experiment_id, tracking_uri
from pipeline.tracking.training_run import run_training
from tests.conftest import TINY

BACKBONES = ("resnet18", "mobilenet_v2")
LEARNING_RATES = ("1e-3", "3e-3")  # two trials per backbone
STORE_OVERRIDES = (*TINY, "trainer.max_epochs=1", "dataset.num_classes=2")


def run_module(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m module args`` from the project root, output captured."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=300, env=env)


@dataclass
class RunSpec:
    """A run to write without training: tags, latest metrics, status."""

    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "FINISHED"
    experiment_id: str | None = None  # None: the store's default for write_runs
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def trial_tags(backbone: str, number: int, state: str = "COMPLETE") -> dict[str, str]:
    """The tags a sweep trial's run carries (``backbone`` comes from run_training too)."""
    return {"role": "trial", "study_name": f"synthetic-{backbone}", "optuna_trial": str(number),
            "sweep_space": "default", "state": state, "backbone": backbone}


@dataclass
class SweepStore:
    overrides: list[str]  # tiny overrides with this store's state_dir
    cfg: DictConfig
    client: MlflowClient
    experiment_id: str
    fingerprint: str
    trials: dict[str, list[str]]  # backbone -> real trial run ids
    decoys: dict[str, str]  # what the decoy is -> run id


_STORES: dict[str, SweepStore] = {}


def sweep_store(root: Path) -> SweepStore:
    """Two real trials per backbone, trained once per process, and decoy runs that would win if
    they competed: a re-run, a failed trial, a trial of other data, a pruned trial."""
    if "sweep" in _STORES:
        return _STORES["sweep"]
    overrides = [f"state_dir={root}", *STORE_OVERRIDES]
    cfg = compose(overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the re-run test repeats these on one thread too
    try:
        trials = {
            backbone: [
                run_training(compose([*overrides, f"backbone={backbone}", f"optimizer.lr={lr}"]),
                             run_name=f"trial-{i}", tags=trial_tags(backbone, i)).run_id
                for i, lr in enumerate(LEARNING_RATES)
            ]
            for backbone in BACKBONES
        }
    finally:
        torch.set_num_threads(threads)
    client = MlflowClient(tracking_uri(cfg))
    exp = experiment_id(cfg, client)
    first = client.get_run(trials["resnet18"][0])
    fingerprint = first.data.tags["data_fingerprint"]
    same = {k: first.data.tags[k] for k in ("dataset", "data_fingerprint", "image_size", "seed")}
    best = {"val_auroc": 1.0, "val_loss": 0.0}
    decoy_specs = {
        "rerun": RunSpec({**same, "backbone": "resnet18", "role": "rerun", "state": "COMPLETE",
                          "rerun_of": trials["resnet18"][0]}, best),
        "failed": RunSpec({**same, **trial_tags("resnet18", 7, "FAIL")}, best, "FAILED"),
        "pruned": RunSpec({**same, **trial_tags("resnet18", 8, "PRUNED")}, best, "KILLED"),
        "other_data": RunSpec({**same, **trial_tags("mobilenet_v2", 9),
                               "data_fingerprint": "0123456789abcdef"}, best),
    }
    write_runs(client, exp, list(decoy_specs.values()), via="client")
    store = SweepStore(overrides, cfg, client, exp, fingerprint, trials,
                       {name: spec.run_id for name, spec in decoy_specs.items()})
    _STORES["sweep"] = store
    return store


def write_runs(client: MlflowClient, experiment_id: str, specs: Sequence[RunSpec],
               via: str = "tables") -> list[str]:
    """Write runs as ``run_training`` would leave them (tags, latest metrics, status).

    ``via="client"``: MlflowClient's create_run, log_batch and set_terminated (about 10 ms a run
    on SQLite); ``via="tables"``: the same rows into MLflow's tables in one transaction (1,000s
    of runs a second), for stores too big to write call by call in a test.
    """
    if via == "client":
        ids = []
        for spec in specs:
            run = client.create_run(spec.experiment_id or experiment_id, tags=spec.tags)
            now = int(time.time() * 1000)
            client.log_batch(run.info.run_id, metrics=[
                Metric(k, v, now, 1) for k, v in spec.metrics.items()
            ], synchronous=True)
            client.set_terminated(run.info.run_id, status=spec.status)
            spec.run_id = run.info.run_id
            ids.append(run.info.run_id)
        return ids
    return _insert_rows(client, experiment_id, specs)


def _insert_rows(client: MlflowClient, experiment_id: str, specs: Sequence[RunSpec]) -> list[str]:
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun, SqlTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import insert

    store = SqlAlchemyStore(client.tracking_uri, "file:///dev/null")
    now = int(time.time() * 1000)
    runs, tags, metrics = [], [], []
    for i, spec in enumerate(specs):
        exp = spec.experiment_id or experiment_id
        runs.append({"run_uuid": spec.run_id, "name": spec.run_id, "experiment_id": int(exp),
                     "status": spec.status, "start_time": now + i, "end_time": now + i + 1,
                     "lifecycle_stage": "active", "source_type": "LOCAL", "source_name": "",
                     "entry_point_name": "", "user_id": "test", "source_version": "",
                     "artifact_uri": f"file:///dev/null/{spec.run_id}"})
        tags += [{"key": k, "value": v, "run_uuid": spec.run_id} for k, v in spec.tags.items()]
        metrics += [{"key": k, "value": v, "timestamp": now, "step": 1, "is_nan": False,
                     "run_uuid": spec.run_id} for k, v in spec.metrics.items()]
    with store.ManagedSessionMaker() as session:
        session.execute(insert(SqlRun), runs)
        session.execute(insert(SqlTag), tags)
        session.execute(insert(SqlLatestMetric), metrics)
        session.execute(insert(SqlMetric), metrics)
    return [spec.run_id for spec in specs]


def trial_runs(cfg: DictConfig, study_name: str) -> list:
    """The MLflow child runs of a study's trials (role=trial), in the configured experiment."""
    client = MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return []
    return client.search_runs(
        [exp.experiment_id], f"tags.study_name = '{study_name}' AND tags.role = 'trial'",
        max_results=1000,
    )
