"""Frozen-prefix feature cache: what a network's frozen stages make of each image, computed once.

A trial whose first ``freeze_depth`` backbone stages are frozen (and in eval mode, so BatchNorm and
dropout are fixed) gets the same stage output for an image in every epoch and every trial with the
same weights. The cache computes ``net.frozen_features`` once per key and memory-maps it from disk;
training then runs only ``stages[freeze_depth:]`` and the head (the head alone when the whole
backbone is frozen).

Key (``FeatureKey``): backbone name, a digest of the frozen stages (architecture, every parameter
and buffer, the input normalisation), freeze depth, image size, data fingerprint, split, device
type and autocast dtype. Random initialisation depends on the seed and pre-training changes the
weights, so the weights enter the key by content, never by name; other data, sizes or depths give
other keys, so an entry can never be served to a network or dataset it was not computed for.

Layout: ``<state_dir>/cache/features/<backbone>/<split>-d<depth>-s<size>-<key>.npy`` with a
``.json`` sidecar naming the key's parts. Arrays are written to a temp file beside their final
name and published with os.replace, so a reader sees a whole entry or none. Several processes
share the cache: one computes a missing entry while the others wait on its lock file (an flock),
then all map the same file; without locks (another file system) two writers of one key each
publish an identical array and the last rename wins.

When (``trainer.feature_cache``): ``auto`` (default) caches when the backbone has frozen stages and
their output per image is no larger than the normalised input image (a shallow prefix whose output
is bigger than its input is cheaper to recompute than to read); ``true`` caches whenever a frozen
prefix exists; ``false`` never. Validation and test images are never augmented, so they always
qualify; training images only when the augmentation preset changes nothing and the loss does not
ask for two views (SupCon).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from pipeline.common.atomic import atomic_write_text, file_lock, open_allocated, temp_beside
from pipeline.common.faults import fault_point
from pipeline.common.scratch import remove_stale
from pipeline.data.bundle import DataBundle
from pipeline.models import ChestXrayNet

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
POLICIES = {"auto": "auto", "true": "on", "on": "on", "false": "off", "off": "off"}
# Frozen-prefix outputs are stored in their own dtype; bfloat16 as its raw 16 bits.
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16}
_COMPUTE_BATCH = 64


def features_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "cache" / "features"


def feature_policy(cfg: DictConfig) -> str:
    """``trainer.feature_cache`` (auto, true or false: the schema) as auto | on | off."""
    return POLICIES[str(cfg.trainer.feature_cache).lower()]


def weights_digest(net: ChestXrayNet, depth: int | None = None) -> str:
    """Content digest of the frozen prefix: its architecture, parameters, buffers and the
    network's input normalisation. Equal digests compute equal features."""
    depth = net.freeze_depth if depth is None else depth
    prefix = net.backbone.stages[:depth]
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(prefix).encode())
    tensors = [("mean", net.mean), ("std", net.std), *prefix.state_dict().items()]
    for name, tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    """Everything the cached output of a frozen prefix depends on."""

    backbone: str
    weights: str  # weights_digest of the frozen prefix
    depth: int
    image_size: int
    fingerprint: str  # the data's (manifest + image contents)
    split: str
    rows: int
    device: str  # cpu | cuda: kernels differ in their last bits
    autocast: str  # none | bfloat16 | float16: the dtype the prefix ran in
    version: int = FORMAT_VERSION

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, root: Path) -> Path:
        name = f"{self.split}-d{self.depth}-s{self.image_size}-{self.digest()}.npy"
        return Path(root) / self.backbone / name


def _read(path: Path, rows: int) -> np.ndarray | None:
    """The published entry, memory-mapped; None when missing or unusable (rebuilt then)."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        log.warning("feature cache entry %s is unreadable (%s): computing it again", path, exc)
        return None
    if array.ndim < 2 or array.shape[0] != rows:
        log.warning("feature cache entry %s has shape %s, not %d rows: computing it again",
                    path, array.shape, rows)
        return None
    return array


class FeatureStore:
    """The cached frozen-prefix outputs of one network on one dataset, one entry per split and
    autocast dtype (entries are computed on first request)."""

    def __init__(self, root: str | os.PathLike[str], net: ChestXrayNet, bundle: DataBundle,
                 device: torch.device | str = "cpu", *, backbone: str | None = None,
                 lock: bool = True, batch_size: int = _COMPUTE_BATCH):
        self.root = Path(root)
        self.net = net
        self.bundle = bundle
        self.device = torch.device(device)
        self.depth = net.freeze_depth
        if self.depth < 1:
            raise ValueError("a feature cache needs at least one frozen backbone stage")
        self.backbone = backbone or net.backbone.name
        self.weights = weights_digest(net, self.depth)
        self.lock = lock
        self.batch_size = int(batch_size)
        self.computed: list[Path] = []  # entries this store computed (not read)
        self._open: dict[tuple[str, str], np.ndarray] = {}

    def key(self, split: str, autocast: torch.dtype | None = None) -> FeatureKey:
        name, rows = self.bundle.cache_rows(split)
        return FeatureKey(
            backbone=self.backbone, weights=self.weights, depth=self.depth,
            image_size=int(self.bundle.image_size), fingerprint=self.bundle.fingerprint,
            split=name, rows=len(rows), device=self.device.type,
            autocast=_dtype_name(autocast),
        )

    def rows(self, split: str) -> np.ndarray:
        """The bundle rows of the entry that serves ``split``, in entry order."""
        return self.bundle.cache_rows(split)[1]

    def features(self, split: str, autocast: torch.dtype | None = None) -> np.ndarray:
        """(rows, C, H, W) outputs of the frozen stages, memory-mapped; row r is the image
        ``rows(split)[r]`` (the split's own rows, or a cross-validation fold's whole pool)."""
        key = self.key(split, autocast)
        memo = (key.split, key.autocast)
        if memo in self._open:
            return self._open[memo]
        path = key.path(self.root)
        array = _read(path, key.rows)
        if array is None:
            lock = file_lock(path.with_name(path.name + ".lock")) if self.lock else (
                contextlib.nullcontext())
            with lock:
                array = _read(path, key.rows)  # another process may have computed it meanwhile
                if array is None:
                    # Killed writers' scratch files: under the lock, any of this entry's is stale.
                    names = (path.name, path.with_suffix(".json").name) if self.lock else ()
                    remove_stale(path.parent, names)
                    array = self._compute(key, path, autocast)
        self._open[memo] = array
        return array

    def _compute(self, key: FeatureKey, path: Path, autocast: torch.dtype | None) -> np.ndarray:
        indices = self.bundle.cv_pool if key.split == "pool" else self.bundle.indices(key.split)
        net = self.net
        was_training = net.training
        home = next(net.parameters()).device
        net.eval().to(self.device)
        sidecar = {**asdict(key), "digest": key.digest()}
        try:
            with temp_beside(path) as tmp:
                out = None
                for start in range(0, len(indices), self.batch_size):
                    rows = indices[start : start + self.batch_size]
                    x = torch.from_numpy(np.asarray(self.bundle.images[rows])).unsqueeze(1)
                    h = _frozen_output(net, x.to(self.device), self.depth, autocast)
                    if out is None:
                        shape = (len(indices), *h.shape[1:])
                        out = open_allocated(tmp, _NUMPY_DTYPES[h.dtype], shape)
                        sidecar.update(shape=list(shape), dtype=str(h.dtype).split(".")[-1])
                    out[start : start + len(rows)] = _to_numpy(h)
                    fault_point("features")
                if out is None:
                    raise ValueError(f"split {key.split} has no images to cache")
                out.flush()
                del out
                atomic_write_text(path.with_suffix(".json"), json.dumps(sidecar, indent=1))
                os.replace(tmp, path)
        finally:
            net.to(home).train(was_training)
        self.computed.append(path)
        log.info("feature cache: computed %s", path)
        array = _read(path, key.rows)
        assert array is not None
        return array

    def tensor_dtype(self, split: str, autocast: torch.dtype | None = None) -> torch.dtype:
        """The torch dtype of the entry's rows (bfloat16 is stored as its raw 16 bits)."""
        stored = self.features(split, autocast).dtype.type
        return {np.float32: torch.float32, np.float16: torch.float16,
                np.uint16: torch.bfloat16}[stored]


@torch.no_grad()
def _frozen_output(
    net: ChestXrayNet, x: Tensor, depth: int, autocast: torch.dtype | None
) -> Tensor:
    context = (torch.autocast(x.device.type, dtype=autocast) if autocast is not None
               else contextlib.nullcontext())
    with context:
        return net.backbone(net.preprocess(x), 0, depth).detach()


def _to_numpy(h: Tensor) -> np.ndarray:
    h = h.contiguous().cpu()
    if h.dtype == torch.bfloat16:
        return h.view(torch.int16).numpy().view(np.uint16)
    return h.numpy()


def _dtype_name(dtype: torch.dtype | None) -> str:
    return "none" if dtype is None else str(dtype).split(".")[-1]


def worthwhile(net: ChestXrayNet, image_size: int) -> bool:
    """True when the frozen prefix's output per image is no larger than the normalised input
    (3 x S x S floats): reading a bigger map back costs more than the prefix saves."""
    shape = feature_shape(net, image_size)
    return int(np.prod(shape)) <= 3 * image_size * image_size


def feature_shape(net: ChestXrayNet, image_size: int) -> tuple[int, ...]:
    """(C, H, W) of the frozen prefix's output at ``image_size``, from one blank image."""
    param = next(net.parameters())
    x = torch.zeros(1, 1, image_size, image_size, dtype=torch.uint8, device=param.device)
    was_training = net.training
    try:
        return tuple(_frozen_output(net.eval(), x, net.freeze_depth, None).shape[1:])
    finally:
        net.train(was_training)
