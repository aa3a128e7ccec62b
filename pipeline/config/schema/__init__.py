"""The config's schema: dataclasses in Hydra's ConfigStore that conf/ files name in their defaults
lists (conf/config.yaml ``- /schema/config@_here_``, which types every group; an option with keys
of its own ``- /schema/<group>/<kind>@_here_``), so composition types every key and refuses
unknown ones; ``rules.check`` then the values a key takes and its bounds. Once."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from pipeline.config.schema.dataset import DATASETS
from pipeline.config.schema.groups import EXTENDED
from pipeline.config.schema.root import Config
from pipeline.config.schema.rules import check, field_names, marks_in, show, unknown_key
from pipeline.config.schema.trainer import TRAINER_ARGUMENTS

__all__ = ["TRAINER_ARGUMENTS", "check", "field_names", "marks_in", "register", "show",
           "unknown_key"]

# group -> kind -> schema of options with keys of their own; conf/<group>/<option>.yaml names
# /schema/<group>/<kind> in its defaults list. The root (schema/config) types every group.
SCHEMAS: dict[str, dict[str, type]] = {"dataset": DATASETS, **EXTENDED}


def register() -> None:
    store = ConfigStore.instance()
    store.store(group="schema", name="config", node=Config)
    for group, kinds in SCHEMAS.items():
        for kind, node in kinds.items():
            store.store(group=f"schema/{group}", name=kind, node=node)


register()
