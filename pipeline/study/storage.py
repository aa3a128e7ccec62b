"""The study's storage: an Optuna RDB (SQLite by default, PostgreSQL for several machines)
with heartbeats, opened (or created, or joined) by name and direction."""

from __future__ import annotations

import random
import time
import warnings
from contextlib import AbstractContextManager
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from pipeline.common.atomic import file_lock
from pipeline.common.errors import ConfigError
from pipeline.common.sqlite import BUSY_TIMEOUT_S, prepare
from pipeline.common.urls import public_url
from pipeline.config import state_dir
from pipeline.study.identity import StudyIdentity, claim
from pipeline.study.reconnect import ReconnectingRDBStorage
from pipeline.study.samplers import make_pruner, make_sampler

# Fresh stores created by several workers at once: a lost race on a table or a version row.
_CREATE_RACE = ("already exists", "duplicate key", "unique constraint", "database is locked")


def storage_url(cfg: DictConfig) -> str:
    return str(cfg.sweep.storage or f"sqlite:///{state_dir(cfg) / 'optuna.db'}")



def make_storage(cfg: DictConfig) -> RDBStorage:
    """The RDB storage with heartbeats, so a killed worker's trial is failed and retried."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = storage_url(cfg)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers share the file: WAL, and wait for a lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True
    for attempt in range(4):
        try:
            prepare(url)
            return ReconnectingRDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=int(cfg.sweep.heartbeat_interval),
                grace_period=int(cfg.sweep.grace_period),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=int(cfg.sweep.max_retry)
                ),
            )
        except Exception as exc:  # noqa: BLE001 -- driver, URL or connection problems alike
            if attempt < 3 and any(m in str(exc).lower() for m in _CREATE_RACE):
                # Another worker (maybe on another machine) is creating the same fresh tables:
                # once it is done they exist, and opening them again succeeds.
                time.sleep(0.5 + random.random())
                continue
            raise ConfigError(
                f"sweep.storage={public_url(url)} cannot be opened ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); give an Optuna RDB URL such "
                "as sqlite:///path/optuna.db or postgresql://user:pass@host/db"
            ) from exc
    raise AssertionError("unreachable")


def study_name(cfg: DictConfig, identity: StudyIdentity, joint: bool = False) -> str:
    """``sweep.study_name``, else ``<dataset>-<backbone>-<data>-<settings>`` (``<dataset>-all-...``
    across backbones): the short data fingerprint and settings digest of ``identity``, so new
    data or an other image size, epoch budget or space is a study of its own."""
    return str(cfg.sweep.study_name or
               f"{cfg.dataset.name}-{'all' if joint else cfg.backbone.name}-{identity.short}")


def open_study(cfg: DictConfig, identity: StudyIdentity, worker: int = 0,
               joint: bool = False) -> optuna.Study:
    """The study by name, created on first use; ``cfg`` is the config its trials run (the
    space's fixed keys and the command line applied), so the pruner's budget is theirs. A study
    whose stored identity differs from ``identity`` is refused (pipeline.study.identity)."""
    direction = str(cfg.objective.direction)
    study = optuna.create_study(
        storage=make_storage(cfg), study_name=study_name(cfg, identity, joint),
        direction=direction, sampler=make_sampler(cfg, worker, conditional=joint),
        pruner=make_pruner(cfg), load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study '{study.study_name}' was created to {study.direction.name.lower()}; "
            f"sweep.direction={direction} cannot change it: use another sweep.study_name"
        )
    claim(study, identity)
    held = len(study.get_trials(deepcopy=False))
    if held:  # joining a study with trials: draw on from them, not the first worker's values
        study.sampler = make_sampler(cfg, worker, conditional=joint, resumed_at=held)
    return study


def setup_lock(cfg: DictConfig) -> AbstractContextManager[None]:
    """Workers started together on one machine set up one at a time: creating the tables of a
    fresh SQLite store is not safe to race (in Optuna or MLflow), and the first worker's decode
    cache serves the others instead of each decoding the same images."""
    return file_lock(state_dir(cfg) / ".setup.lock")
