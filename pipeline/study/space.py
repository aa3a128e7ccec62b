"""Search spaces (``sweeps/<name>.yaml``): read, checked against the config, sampled by a trial.

A space maps Hydra config keys to Optuna distributions; a trial's sample becomes ``key=value``
overrides, so every trial is an ordinary composed config that ``pipeline.train`` can re-run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import DictConfig, OmegaConf

from pipeline.common.errors import ConfigError
from pipeline.config import CONF_DIR, PROJECT_ROOT
from pipeline.models.catalog import stage_count

SWEEPS_DIR = PROJECT_ROOT / "sweeps"
TYPES = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    params: dict[str, dict[str, Any]]
    fixed: dict[str, Any]

    @property
    def backbones(self) -> list[str]:
        """The backbones a joint study chooses between (empty: the configured one only)."""
        spec = self.params.get("backbone")
        return [str(c) for c in spec["choices"]] if spec else []

    def with_backbones(self, names: list[str]) -> SearchSpace:
        """The space choosing between ``names`` (``sweep.backbones=[a,b]``)."""
        params = dict(self.params)
        params["backbone"] = {"type": "categorical", "choices": list(names)}
        params = {"backbone": params.pop("backbone"), **params}  # chosen first
        return SearchSpace(self.name, self.path, params, dict(self.fixed))

    def without(self, key: str) -> SearchSpace:
        """The space with ``key`` no longer searched (trials keep its configured value)."""
        params = {k: v for k, v in self.params.items() if k != key}
        return SearchSpace(self.name, self.path, params, dict(self.fixed))

    def fixed_overrides(self) -> list[str]:
        return [f"{key}={_override_value(v)}" for key, v in self.fixed.items()]

    def sample(self, trial: optuna.trial.BaseTrial, cfg: DictConfig) -> dict[str, Any]:
        """The trial's values, one per param (``high: max`` = the stage count of the backbone:
        the one the trial chose, in a joint study, so the freeze depth is conditional on it)."""
        values: dict[str, Any] = {}
        backbone = cfg.backbone
        for key, spec in self.params.items():
            kind = spec["type"]
            if kind == "categorical":
                values[key] = trial.suggest_categorical(key, list(spec["choices"]))
                if key == "backbone":
                    backbone = backbone_option(str(values[key]))
                continue
            high = stage_count(backbone) if spec["high"] == "max" else spec["high"]
            kw = {"log": bool(spec.get("log", False))}
            if spec.get("step") is not None:
                kw["step"] = spec["step"]
            if kind == "int":
                values[key] = trial.suggest_int(key, int(spec["low"]), int(high), **kw)
            else:
                values[key] = trial.suggest_float(key, float(spec["low"]), float(high), **kw)
        return values


def backbone_option(name: str) -> DictConfig:
    """``conf/backbone/<name>.yaml`` as written (what its stages are built from)."""
    return OmegaConf.load(CONF_DIR / "backbone" / f"{name}.yaml")


def overrides_of(values: dict[str, Any]) -> list[str]:
    """Sampled values as Hydra overrides (config groups first, so their keys can follow)."""
    ordered = sorted(values.items(), key=lambda kv: "." in kv[0])
    return [f"{key}={_override_value(value)}" for key, value in ordered]


def _override_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    return str(value)


def space_path(name: str) -> Path:
    """``sweeps/<name>.yaml``, or ``name`` itself when it is a YAML file."""
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate.resolve()
    path = SWEEPS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
        raise ConfigError(
            f"sweep.space={name}: no file {path}; choose one of {known} or give a YAML file path"
        )
    return path


def load_space(name: str, cfg: DictConfig) -> SearchSpace:
    """Read and check a space file; any mistake is a one-line error naming the file and key."""
    path = space_path(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise ConfigError(f"{path}: needs a non-empty `params:` mapping of config key -> spec")
    unknown = set(raw) - {"params", "fixed"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; use params, fixed")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{path}: `fixed:` must map config keys to values")
    for key in fixed:
        _check_key(path, "fixed", key, cfg)
    params = {}
    for key, spec in raw["params"].items():
        _check_key(path, "params", key, cfg)
        params[key] = _check_spec(path, key, spec, cfg)
    return SearchSpace(name=path.stem, path=path, params=params, fixed=dict(fixed))


def _number(value: Any) -> Any:
    """YAML reads ``1e-5`` (no dot) as a string: take it as the number it means."""
    if isinstance(value, str) and value != "max":
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_key(path: Path, section: str, key: Any, cfg: DictConfig) -> None:
    key = str(key)
    if (CONF_DIR / key).is_dir():  # a config group: the value picks an option
        return
    if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
        top = sorted(str(k) for k in cfg)
        raise ConfigError(
            f"{path}: {section}.{key} is not a config key (top-level keys: {top}; "
            "a group name such as optimizer picks an option)"
        )


def _check_spec(path: Path, key: str, spec: Any, cfg: DictConfig) -> dict[str, Any]:
    where = f"{path}: params.{key}"
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise ConfigError(f"{where} needs `type:` one of {sorted(TYPES)}")
    kind = spec["type"]
    extra = set(spec) - TYPES[kind] - {"type"}
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {sorted(extra)} for type {kind}; "
                          f"valid: {sorted(TYPES[kind])}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices must be a non-empty list")
        if (CONF_DIR / key).is_dir():
            options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
            bad = [c for c in choices if str(c) not in options]
            if bad:
                raise ConfigError(f"{where}.choices {bad} are not options of {key}: {options}")
        return dict(spec)
    for bound in ("low", "high"):
        if bound not in spec:
            raise ConfigError(f"{where} needs `{bound}:`")
    spec = {**spec, **{b: _number(spec[b]) for b in ("low", "high")}}
    high = spec["high"]
    if high == "max":
        if kind != "int" or key != "backbone.freeze_depth":
            raise ConfigError(f"{where}.high: `max` only applies to backbone.freeze_depth")
        high = stage_count(cfg.backbone)
    for bound, value in (("low", spec["low"]), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}.{bound}={value!r} must be a number")
        if kind == "int" and not float(value).is_integer():
            raise ConfigError(f"{where}.{bound}={value!r} must be an integer")
    if spec["low"] > high:
        raise ConfigError(f"{where}: low={spec['low']} is above high={high}")
    if spec.get("log") and spec["low"] <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {spec['low']}")
    return dict(spec)
