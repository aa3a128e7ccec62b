"""The callables a config's ``_target_`` may name, and the one way the project instantiates one.

A config is not only read from conf/: ``rerun``, ``predict``, ``select_best`` and ``evaluate``
rebuild a network from the ``config.yaml`` a run logged, and anyone who can write to the MLflow
store can write that file. Hydra calls whatever ``_target_`` names (its own target policy calls
itself best-effort), so every ``_target_`` of a config, nested ones included, must lie under the
modules the project's config files build from: its own heads and augmentations, PyTorch's
optimisers, schedulers and layers, torchvision's transforms, timm's layers and Lightning's
Trainer. Within those, nothing that loads, saves or fetches
(``torch.load`` unpickles, ``torch.hub`` runs downloaded code) and nothing private.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.common.errors import ConfigError

# Modules (with their trailing dot) under which a ``_target_`` may lie, and single callables: what
# conf/ names (heads, augmentations, optimisers, schedulers, the Trainer) and the layers and
# transforms of the libraries the project builds on. Not timm's model factories nor the rest of
# pipeline.models: they take checkpoint paths, which torch.load reads.
ALLOWED_TARGETS = (
    "pipeline.models.heads.",
    "pipeline.data.transforms.",
    "torch.optim.",
    "torch.nn.",
    "torchvision.transforms.",
    "timm.layers.",
    "lightning.pytorch.Trainer",  # the class itself (conf/trainer), not what lies under it
)
# A part of the dotted name that reads or writes files or fetches code: refused under any prefix.
_GATEWAY = re.compile(r"^(_|load|read|save|write|hub|download|from_pretrained|push)",
                      re.IGNORECASE)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_META = ("_target_", "_partial_", "_args_", "_convert_", "_recursive_")


def target_refusal(target: Any) -> str | None:
    """Why ``target`` may not be instantiated, or None when it may."""
    if not isinstance(target, str) or not _DOTTED.match(target):
        return "is not a dotted name of a callable"
    if not any(target.startswith(a) if a.endswith(".") else target == a
               for a in ALLOWED_TARGETS):
        return f"lies outside the modules a config may call ({', '.join(ALLOWED_TARGETS)})"
    if any(_GATEWAY.match(part) for part in target.split(".")[1:]):
        return "loads, saves or fetches, or is private: a config may not call it"
    return None


def check_targets(cfg: Any, where: str = "the config") -> None:
    """Refuse ``cfg`` (a config or any part of one) when a ``_target_`` in it, at any depth,
    names a callable outside ALLOWED_TARGETS: one ConfigError naming the key. Nothing is called."""
    for key, target in _targets(_plain(cfg)):
        reason = target_refusal(target)
        if reason:
            raise ConfigError(
                f"{where}: {key}={target!r} {reason}; nothing was run (a config names only the "
                "project's heads, augmentations, optimisers, schedulers and Trainer)"
            )


def instantiate(node: Any, *args: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` of a node whose every ``_target_`` check_targets allows: how
    the project calls what a config names (keyword arguments that are configs are checked too)."""
    import hydra

    check_targets(node)
    for key, value in kwargs.items():
        if key not in _META:
            check_targets(value, f"argument {key}")
    return hydra.utils.instantiate(node, *args, **kwargs)


def _plain(cfg: Any) -> Any:
    """The node as plain containers, its interpolations unresolved (a ``_target_`` must be a
    name as written, not one computed when it is resolved)."""
    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=False)
    return cfg


def _targets(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "_target_":
                yield f"{prefix}{key}", value
            else:
                yield from _targets(value, f"{prefix}{key}.")
    elif isinstance(node, list | tuple):
        for index, value in enumerate(node):
            yield from _targets(value, f"{prefix}{index}.")
