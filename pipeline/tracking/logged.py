"""A logged run read back: the run and the resolved config it logged, made to run here.

What ``select_best``, ``rerun`` and ``predict`` share: they all start from something
``run_training`` logged, and they all must say in one line what is missing when it is not there.
The config is used as it was logged, whatever the config files say today: read once per run per
command, checked against today's schema (composed once, for the options it chose), never filled
in from today's files. A key this version reads that it lacks (the files gained it since) is one
line naming it; so is what the schema refuses (a key it no longer has, a value of another kind).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.common.errors import ConfigError, PipelineError
from pipeline.config import CONF_DIR, check_values, compose, describe_error, one_line
from pipeline.config.targets import check_targets
from pipeline.tracking.store import MissingArtifact, tracking_uri

if TYPE_CHECKING:
    from pipeline.tracking.store import Store

_ABSENT = object()
CONFIG = "config.yaml"
# Groups whose chosen option a logged config names in its ``name`` key.
_NAMED_GROUPS = ("dataset", "backbone", "head", "loss", "augmentation", "scheduler")
# Keys a command sets on every logged config it runs: where it runs, not what the run did.
_SET_HERE = ("state_dir", "tracking.uri")


@dataclass(frozen=True)
class Logged:
    """A run's config as logged, read once per command (with the run, when read from a store)."""

    run_id: str
    config: DictConfig
    run: Any = None


def read_logged(store: Store, run: Any) -> Logged:
    """The run (or the run of that id) with the ``config.yaml`` ``run_training`` logged."""
    run = store.get_run(run) if isinstance(run, str) else run
    try:
        config = store.read_artifact(run.info.run_id, CONFIG, lambda p: OmegaConf.load(p))
    except MissingArtifact as exc:
        raise PipelineError(
            f"run '{run.info.run_id}' has no {CONFIG} artifact: it was not logged by run_training"
        ) from exc
    # Anyone who can write to the store wrote this file: no callable outside the list is built.
    check_targets(config, f"run {run.info.run_id}'s logged {CONFIG}")
    return Logged(run.info.run_id, config, run)


def local_config(logged: Logged, cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """The logged config made to run here: this invocation's state dir and store, then
    ``overrides``; every other key as logged. Checked against today's schema: what it refuses,
    and a key it reads that neither the logged config nor an override gives, is one ConfigError.
    """
    schema, raw = _schema_of(logged.config), OmegaConf.to_container(logged.config, resolve=True)
    try:
        local = OmegaConf.merge(schema, raw)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"the run's logged config does not fit this version's config: "
                          f"{describe_error(exc)}") from exc
    local.state_dir = str(cfg.state_dir)
    local.tracking.uri = tracking_uri(cfg)
    local = apply_overrides(local, overrides)
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides} | set(_SET_HERE)
    missing = [key for key in _leaf_keys(OmegaConf.to_container(schema, resolve=True))
               if key not in given and not _holds(raw, key)]
    if missing:
        raise ConfigError(
            f"run {logged.run_id}'s logged config has no {', '.join(missing)}, which this "
            "version reads (the config files gained it after the run was logged): re-run it "
            "with +<key>=<value> for what the run used"
        )
    check_values(local)
    check_targets(local, f"run {logged.run_id}'s config with the overrides")
    return local


def _schema_of(run_cfg: DictConfig) -> DictConfig:
    """Today's composition of the options a logged config chose: the keys and types this version
    reads (its values are not used)."""
    choices = []
    for group in _NAMED_GROUPS:
        name = OmegaConf.select(run_cfg, f"{group}.name")
        if name and (CONF_DIR / group / f"{name}.yaml").is_file():
            choices.append(f"{group}={name}")
    try:
        schema = compose(choices)
    except ConfigError as exc:
        raise ConfigError(f"the run's logged choices {choices} do not compose here: {exc}") from exc
    OmegaConf.set_struct(schema, False)
    return schema


def _leaf_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from _leaf_keys(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix[:-1]


def _holds(node: Any, key: str) -> bool:
    """Whether ``node`` gives ``key``: the key itself, or a value (not a mapping) on its path."""
    for part in key.split("."):
        if not isinstance(node, Mapping):
            return True
        if part not in node:
            return False
        node = node[part]
    return True


@contextmanager
def as_logged(run_id: str) -> Iterator[None]:
    """Work on run ``run_id``'s logged config as it is (a network rebuilt from it): a key the
    code reads that it lacks is a one-line ConfigError naming the key."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    try:
        yield
    except (ConfigAttributeError, ConfigKeyError) as exc:
        key = exc.full_key or exc.key or one_line(exc)
        raise ConfigError(
            f"run {run_id}'s logged config has no {key}, which this version reads (the config "
            "files gained it after the run was logged)"
        ) from exc


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
