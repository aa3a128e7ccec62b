"""A logged run read back: the run itself and its resolved config, made to run here.

What ``select_best``, ``rerun`` and ``predict`` share: they all start from something
``run_training`` logged, and they all must say in one line what is missing when it is not there.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline import tracking
from pipeline.common.errors import ConfigError, PipelineError
from pipeline.config import CONF_DIR, check_values, compose, describe_error, one_line

_ABSENT = object()


def open_store(cfg: DictConfig, missing: str) -> Any:  # -> MlflowClient
    """A client of the configured store that must exist: a SQLite file that is not there gives a
    PipelineError starting with ``missing`` (opening it would create an empty store, taking
    seconds of schema migrations to find nothing)."""
    uri = tracking.tracking_uri(cfg)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise PipelineError(
            f"{missing}: there is no MLflow store at {uri} (nothing was logged there; check "
            "state_dir or tracking.uri)"
        )
    return tracking.client(cfg)


def get_run(mlflow_client: Any, run_id: str) -> Any:
    """The run, or a PipelineError naming the id and the store."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise PipelineError(
                f"run '{run_id}' is not in the MLflow store at {mlflow_client.tracking_uri}: "
                "check the id (MLflow UI, or the run_id a command printed) and tracking.uri"
            ) from exc
        raise


def logged_config(mlflow_client: Any, run_id: str) -> DictConfig:
    """The resolved config ``run_training`` logged as the run's ``config.yaml``."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow_client.download_artifacts(run_id, "config.yaml", tmp)
        except (MlflowException, OSError) as exc:
            raise PipelineError(
                f"run '{run_id}' has no config.yaml artifact: it was not logged by run_training"
            ) from exc
        return OmegaConf.load(path)


def local_config(run_cfg: DictConfig, cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """A logged config made to run here: this invocation's state dir and store, then overrides.

    Keys the config files have gained since the run was logged (a new group, a new key of its
    backbone or head) are filled in from today's files for the options it chose; every key it
    logged keeps its logged value. Today's schema checks it: a logged config it refuses (a key
    it no longer has, a value of another kind) is one ConfigError.
    """
    try:
        local = OmegaConf.merge(_schema_of(run_cfg), OmegaConf.to_container(run_cfg, resolve=True))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"the run's logged config does not fit this version's config: "
                          f"{describe_error(exc)}") from exc
    local.state_dir = str(cfg.state_dir)
    local.tracking.uri = tracking.tracking_uri(cfg)
    local = apply_overrides(local, overrides)
    check_values(local)
    return local


# Groups whose chosen option a logged config names in its ``name`` key.
_NAMED_GROUPS = ("dataset", "backbone", "head", "loss", "augmentation", "scheduler")


def _schema_of(run_cfg: DictConfig) -> DictConfig:
    """Today's composition of the options a logged config chose (empty when one is gone)."""
    choices = []
    for group in _NAMED_GROUPS:
        name = OmegaConf.select(run_cfg, f"{group}.name")
        if name and (CONF_DIR / group / f"{name}.yaml").is_file():
            choices.append(f"{group}={name}")
    try:
        schema = compose(choices)
    except ConfigError as exc:
        raise ConfigError(f"the run's logged choices {choices} do not compose here: {exc}") from exc
    if "objective" not in run_cfg and OmegaConf.select(run_cfg, "sweep.metric"):
        schema.objective.metric = run_cfg.sweep.metric  # logged before the objective group
        schema.objective.direction = run_cfg.sweep.direction
    OmegaConf.set_struct(schema, False)
    return schema


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Hydra's override grammar on an already resolved config (no config groups to choose).

    ``key=value`` changes a key the config has, ``+key=value`` adds one, ``++key=value`` does
    either, ``~key`` deletes. Replacing a whole group (``backbone=resnet50``) is refused: a logged
    config is the composition, there is no defaults list left to re-compose.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(f"bad override: {one_line(exc)}") from exc
    for override in parsed:
        key = override.key_or_group
        current = OmegaConf.select(cfg, key, default=_ABSENT)
        if override.is_sweep_override() or override.package is not None:
            raise ConfigError(f"override '{override.input_line}': sweeps and packages do not apply")
        if override.is_delete():
            if current is _ABSENT:
                raise ConfigError(f"override '~{key}': the config has no key {key}")
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            _schema_allows(override.input_line, node.pop, leaf)
            continue
        value = override.value()
        if current is _ABSENT and not (override.is_add() or override.is_force_add()):
            raise ConfigError(
                f"override '{override.input_line}': the logged config has no key {key} "
                f"(add one with +{key}=...)"
            )
        if isinstance(current, DictConfig) and not isinstance(value, dict):
            raise ConfigError(
                f"override '{override.input_line}' would replace the group {key}: a logged "
                f"config keeps its composition; override its keys ({key}.<key>=...)"
            )
        _schema_allows(override.input_line, OmegaConf.update, cfg, key, value, merge=False,
                       force_add=True)
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:  # noqa: BLE001 -- OmegaConf's interpolation errors, one line
        raise ConfigError(f"bad override: {one_line(exc)}") from exc
    return cfg


def _schema_allows(line: str, change: Any, *args: Any, **kwargs: Any) -> None:
    """``change(*args, **kwargs)``; the schema's refusal (a value of another kind, a key it
    always has) as one line."""
    try:
        change(*args, **kwargs)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"override '{line}': {describe_error(exc)}") from exc
