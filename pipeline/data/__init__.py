"""Data layer: datasets on disk (or generated) -> decoded, cached, split uint8 images -> batches.

``load_data(cfg)`` builds (once per process) a DataBundle from ``cfg.dataset``;
``ChestXrayDataModule`` serves it to Lightning; ``decode_image`` is the same preprocessing for
images met at prediction time; ``build_augmentation`` turns ``cfg.augmentation`` into a transform.
Names load on first use, so tools that only describe data never import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.data.bundle import DataBundle, clear_memo, load_data
    from pipeline.data.datamodule import ChestXrayDataModule
    from pipeline.data.images import UnreadableImage, decode_image
    from pipeline.data.transforms import build_augmentation

_EXPORTS = {
    "DataBundle": "pipeline.data.bundle",
    "load_data": "pipeline.data.bundle",
    "clear_memo": "pipeline.data.bundle",
    "ChestXrayDataModule": "pipeline.data.datamodule",
    "decode_image": "pipeline.data.images",
    "UnreadableImage": "pipeline.data.images",
    "build_augmentation": "pipeline.data.transforms",
}

__all__ = [
    "ChestXrayDataModule",
    "DataBundle",
    "UnreadableImage",
    "build_augmentation",
    "clear_memo",
    "decode_image",
    "load_data",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
