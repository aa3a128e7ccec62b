"""What one command opens once and hands down: its state directory, its MLflow store, and the
data it trains on. Nothing below reaches for a store or a dataset of its own: a sweep's trials
all train on the one bundle its context holds, a selection reads every run from the one store."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from pipeline.config import state_dir
from pipeline.data.bundle import DataBundle, load_data
from pipeline.tracking.store import Store, open_store


@dataclass(frozen=True)
class Context:
    state_dir: Path
    store: Store | None = None  # None: a command that records nothing (describe_data)
    bundle: DataBundle | None = None  # the command's data, when it has one of its own

    def data(self, cfg: DictConfig) -> DataBundle:
        """``cfg``'s data: the bundle held when ``cfg`` names it (its loader-only keys aside, so
        every trial of a sweep trains on the one bundle), else loaded now."""
        if self.bundle is not None and self.bundle.serves(cfg):
            return self.bundle
        return load_data(cfg)

    def with_data(self, bundle: DataBundle) -> Context:
        return replace(self, bundle=bundle)


def open_context(cfg: DictConfig, *, data: bool = True, store: bool = True,
                 missing: str | None = None) -> Context:
    """The context of a command run with ``cfg``: its store opened (its experiment created on
    first use; with ``missing``, a store that must exist already, see ``open_store``) and its
    data loaded, each when asked for."""
    opened = None
    if store:
        opened = open_store(cfg, missing, create=missing is None)
    return Context(state_dir(cfg), opened, load_data(cfg) if data else None)
