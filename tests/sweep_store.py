"""MLflow stores for the selection, re-run and predict tests.

``sweep_store``: a real tiny study per backbone (``run_study``, two enqueued trials each, one of
them a recipe trial), built once per test process, plus runs that must never compete.
``write_runs``: runs without training, written through the store's own ``open_run`` as
``run_training`` would leave them (tags, state, metrics, status). ``run_sweep``: a study as
``python -m pipeline.sweep`` runs one, in this process.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import optuna
import torch
from mlflow import MlflowClient
from omegaconf import DictConfig

from pipeline.config import PROJECT_ROOT, compose
from pipeline.data.bundle import load_data
from pipeline.runs.context import open_context
from pipeline.study.loop import run_study
from pipeline.study.plan import plan_study
from pipeline.study.storage import open_study
from pipeline.tracking.runs import start_run
from pipeline.tracking.schema import RUN_STATUS, TRAINING_ROLES, Role, State, Tag
from pipeline.tracking.search import quote, where
from pipeline.tracking.store import Store, open_store, tracking_uri
from tests.conftest import TINY

BACKBONES = ("resnet18", "mobilenet_v2")
LEARNING_RATES = ("1e-3", "3e-3")  # two trials per backbone
RECIPE = "003"  # the paper whose recipe mobilenet_v2's second trial stands for
STORE_OVERRIDES = (*TINY, "trainer.max_epochs=1", "dataset.num_classes=2")


def run_module(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m module args`` from the project root, output captured."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=300, env=env)


def run_sweep(cfg: DictConfig, overrides: Sequence[str], echo: bool = True,
          callbacks: Sequence[pl.Callback] = ()) -> dict:
    """A study as ``python -m pipeline.sweep`` runs one: planned, its context opened, run."""
    plan = plan_study(cfg, overrides, echo)
    return run_study(open_context(plan.trial_cfg), plan, echo, callbacks)


def study_of(overrides: Sequence[str]) -> optuna.Study:
    """The study ``python -m pipeline.sweep overrides`` opens (created on first use): its
    identity read from its plan and data, as the sweep reads it."""
    plan = plan_study(compose(overrides), overrides, echo=False)
    identity = plan.identity(load_data(plan.trial_cfg).fingerprint)
    return open_study(plan.trial_cfg, identity, joint=plan.joint)


def dead_pid() -> str:
    """The id of a process of this machine that has ended (as a killed worker's run says)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class RunSpec:
    """A run to write without training: tags (its role and state among them), latest metrics,
    status (RUNNING: left open, as a process that died leaves it)."""

    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "FINISHED"
    experiment_id: str | None = None  # None: the store's default for write_runs
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def trial_tags(backbone: str, number: int, state: str = State.COMPLETE) -> dict[str, str]:
    """The tags a sweep trial's run carries (``backbone`` comes from run_training too)."""
    return {Tag.ROLE: Role.TRIAL, Tag.STUDY_NAME: f"synthetic-{backbone}",
            Tag.OPTUNA_TRIAL: str(number), Tag.SWEEP_SPACE: "default", Tag.STATE: state,
            Tag.BACKBONE: backbone}


@dataclass
class SweepStore:
    overrides: list[str]  # tiny overrides with this store's state_dir
    cfg: DictConfig
    client: MlflowClient  # to read the store back as any MLflow user would
    tracking: Store  # the store as the pipeline opens it
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
            study = study_of(study_overrides)
            for i, lr in enumerate(LEARNING_RATES):
                # mobilenet_v2's second trial stands for a paper's recipe (a baseline trial).
                recipe = {"baseline": RECIPE} if backbone == "mobilenet_v2" and i == 1 else None
                study.enqueue_trial({"optimizer.lr": float(lr), "dataset.batch_size": 16,
                                     "backbone.freeze_depth": 0}, user_attrs=recipe)
            run_sweep(study_cfg, study_overrides, echo=False)
            trials[backbone] = [t.user_attrs["mlflow_run_id"]
                                for t in study_of(study_overrides).get_trials(deepcopy=False)]
    finally:
        torch.set_num_threads(threads)
    tracking = open_store(cfg)
    client, exp = tracking.client, tracking.experiment_id
    first = client.get_run(trials["resnet18"][0])
    fingerprint = first.data.tags[Tag.DATA_FINGERPRINT]
    same = {k: first.data.tags[k] for k in (Tag.DATASET, Tag.DATA_FINGERPRINT, Tag.IMAGE_SIZE,
                                            Tag.SEED)}
    best = {"best_val_auroc": 1.0, "best_val_loss": 0.0}
    decoy_specs = {
        "rerun": RunSpec({**same, Tag.BACKBONE: "resnet18", Tag.ROLE: Role.RERUN,
                          Tag.STATE: State.COMPLETE, Tag.RERUN_OF: trials["resnet18"][0]}, best),
        "failed": RunSpec({**same, **trial_tags("resnet18", 7, State.FAIL)}, best, "FAILED"),
        "pruned": RunSpec({**same, **trial_tags("resnet18", 8, State.PRUNED)}, best),  # FINISHED
        "other_data": RunSpec({**same, **trial_tags("mobilenet_v2", 9),
                               Tag.DATA_FINGERPRINT: "0123456789abcdef"}, best),
    }
    write_runs(tracking, list(decoy_specs.values()))
    store = SweepStore(overrides, cfg, client, tracking, exp, fingerprint, trials,
                       {name: spec.run_id for name, spec in decoy_specs.items()})
    _STORES["sweep"] = store
    return store


def write_runs(store: Store, specs: Sequence[RunSpec]) -> list[str]:
    """Write runs as ``run_training`` would leave them, through the store's ``open_run`` (its
    tags, the state it ends in, latest metrics at step 1, status); a RUNNING one is started and
    left open. About 15 ms a run on SQLite."""
    ids = []
    for spec in specs:
        tags = dict(spec.tags)
        role, parent = Role(tags.pop(Tag.ROLE)), tags.pop(Tag.PARENT, None)
        target = store.at(spec.experiment_id) if spec.experiment_id else store
        if spec.status == "RUNNING":
            run_id = start_run(target, role, parent, **tags)
            target.log(run_id, metrics=spec.metrics, step=1)
        else:
            state = State.FAIL if spec.status == "FAILED" else State.COMPLETE
            if role in TRAINING_ROLES:  # the state is written when the run ends
                state = State(tags.pop(Tag.STATE, state))
            assert RUN_STATUS[state] == spec.status, (state, spec.status)
            with target.open_run(role, parent, **tags) as run:
                target.log(run.id, metrics=spec.metrics, step=1)
                run.end(state)
            run_id = run.id
        spec.run_id = run_id
        ids.append(run_id)
    return ids


def trial_runs(cfg: DictConfig, study_name: str) -> list:
    """The MLflow child runs of a study's trials (role=trial), in the configured experiment:
    ``study_name`` or a default name's ``<dataset>-<backbone>`` (its identity left out)."""
    client = MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], where(
        f"tags.study_name LIKE {quote(study_name + '%')}", role=Role.TRIAL), max_results=1000)
    return [r for r in runs if r.data.tags[Tag.STUDY_NAME] in (study_name, *_named(
        study_name, r.data.tags[Tag.STUDY_NAME]))]


def _named(prefix: str, name: str) -> tuple[str, ...]:
    """``name`` when it is ``prefix`` with a default name's identity (``-<8 hex>-<8 hex>``)."""
    rest = name[len(prefix):]
    return (name,) if len(rest) == 18 and rest[0] == rest[9] == "-" else ()
