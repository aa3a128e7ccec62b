"""MLflow stores for the selection, re-run and predict tests.

``sweep_store``: a real tiny study per backbone (``run_study``, two enqueued trials each), built
once per test process, plus runs that must never compete. ``write_runs``: runs without training,
written through MlflowClient as ``run_training`` would leave them (tags, metrics, status).
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
from pipeline.study.loop import run_study
from pipeline.study.storage import open_study
from pipeline.tracking.store import experiment_id, tracking_uri
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
    trials: dict[str, list[str]] = {}
    try:
        for backbone in BACKBONES:
            study_overrides = [*overrides, f"backbone={backbone}", "sweep.pruner=none",
                               f"sweep.n_trials={len(LEARNING_RATES)}"]
            study_cfg = compose(study_overrides)
            study = open_study(study_cfg)
            for lr in LEARNING_RATES:
                study.enqueue_trial({"optimizer.lr": float(lr), "dataset.batch_size": 16,
                                     "backbone.freeze_depth": 0})
            run_study(study_cfg, study_overrides, echo=False)
            trials[backbone] = [t.user_attrs["mlflow_run_id"]
                                for t in open_study(study_cfg).get_trials(deepcopy=False)]
    finally:
        torch.set_num_threads(threads)
    client = MlflowClient(tracking_uri(cfg))
    exp = experiment_id(cfg, client)
    first = client.get_run(trials["resnet18"][0])
    fingerprint = first.data.tags["data_fingerprint"]
    same = {k: first.data.tags[k] for k in ("dataset", "data_fingerprint", "image_size", "seed")}
    best = {"best_val_auroc": 1.0, "best_val_loss": 0.0}
    decoy_specs = {
        "rerun": RunSpec({**same, "backbone": "resnet18", "role": "rerun", "state": "COMPLETE",
                          "rerun_of": trials["resnet18"][0]}, best),
        "failed": RunSpec({**same, **trial_tags("resnet18", 7, "FAIL")}, best, "FAILED"),
        "pruned": RunSpec({**same, **trial_tags("resnet18", 8, "PRUNED")}, best),  # FINISHED
        "other_data": RunSpec({**same, **trial_tags("mobilenet_v2", 9),
                               "data_fingerprint": "0123456789abcdef"}, best),
    }
    write_runs(client, exp, list(decoy_specs.values()))
    store = SweepStore(overrides, cfg, client, exp, fingerprint, trials,
                       {name: spec.run_id for name, spec in decoy_specs.items()})
    _STORES["sweep"] = store
    return store


def write_runs(client: MlflowClient, experiment_id: str, specs: Sequence[RunSpec]) -> list[str]:
    """Write runs as ``run_training`` would leave them (tags, latest metrics, status), through
    MlflowClient's create_run, log_batch and set_terminated (about 10 ms a run on SQLite)."""
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
