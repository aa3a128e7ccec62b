"""Where a dataset's rows come from: files on disk (through a layout scanner and the decode cache),
the embedded synthetic generator, or a MedMNIST ``.npz``. Each gives decoded rows; splitting and
fingerprinting happen in pipeline.data.bundle, the same for all."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from pipeline.common.errors import ConfigError, DataError
from pipeline.common.files import not_regular
from pipeline.data import decode_cache
from pipeline.data.decode_pool import decode_workers
from pipeline.data.hashing import HashIndex, digest_bytes, digest_strings, index_file_for
from pipeline.data.images import PREPROCESS_VERSION, not_opened, read_bytes, to_square_gray
from pipeline.data.layouts import SCANNERS, dataset_root, normalise_class, printable, some

_SHOW_BAD = 3  # paths named in the skip warning


class BadImageWarning(UserWarning):
    """Unreadable images were left out of the dataset (dataset.on_bad_image=skip)."""


@dataclass
class Rows:
    """Decoded rows of a dataset, before the split."""

    images: np.ndarray  # (N, S, S) uint8, memory-mapped
    images_path: Path | None
    labels: np.ndarray  # (N,) int64
    classes: list[str]
    patients: list[str]
    files: list[str]
    image_digest: str  # hash of the source image bytes, in row order
    given: np.ndarray | None = None  # split per row, when the dataset gives it
    skipped: list[tuple[str, str]] = field(default_factory=list)
    root: Path | None = None
    content: list[str] | None = None  # per-row hash of the source file's bytes, when there is one
    patient_known: np.ndarray | None = None  # (N,) bool: the row has a real patient id


def from_files(ds: DictConfig, state_dir: Path) -> Rows:
    """Scan the layout, decode every file up front (through the cache), skip or stop on bad ones."""
    listing = SCANNERS[str(ds.name)](ds)
    root = listing.root
    if not listing.files:
        if listing.filters:
            raise DataError(
                f"no images left in {root} after the filters of dataset={ds.name} "
                f"({listing.filters}): loosen them (dataset.modalities, dataset.views, "
                f"dataset.label_rules, dataset.default_label)"
            )
        raise DataError(f"no image files found under dataset.root={root} (dataset={ds.name})")
    size = int(ds.image_size)
    paths = [root / f for f in listing.files]
    workers = decode_workers(ds.get("decode_workers", "auto"))
    decoded = decode_cache.decode_files(paths, root, size, state_dir, workers)
    skipped = [(listing.files[i], reason) for i, reason in sorted(decoded.bad.items())]
    _report_bad(skipped, str(ds.on_bad_image), root, len(listing.files))
    rows = decoded.kept
    class_index = {name: n for n, name in enumerate(listing.classes)}
    files = [listing.files[i] for i in rows]
    return Rows(
        images=decoded.images,
        images_path=decoded.images_path,
        labels=np.array([class_index[listing.labels[i]] for i in rows], dtype=np.int64),
        classes=listing.classes,
        patients=[listing.patients[i] or files[r] for r, i in enumerate(rows)],
        patient_known=np.array([listing.patients[i] is not None for i in rows], dtype=bool),
        files=files,
        image_digest=digest_strings(decoded.hashes),
        given=np.array([listing.splits[i] for i in rows]) if listing.splits else None,
        skipped=skipped,
        root=root,
        content=list(decoded.hashes),
    )


def _report_bad(skipped: list[tuple[str, str]], policy: str, root: Path, total: int) -> None:
    if not skipped:
        return
    # A FIFO, device or socket is no image at all: skipped (and counted) under either policy.
    bad = [item for item in skipped if not not_opened(item[1])]
    if (policy == "error" and bad) or len(skipped) == total:
        path, reason = (bad or skipped)[0]
        more = f" ({len(skipped)} of {total} files are unreadable)" if len(skipped) > 1 else ""
        fix = (
            "; set dataset.on_bad_image=skip to leave unreadable files out"
            if policy == "error" and len(skipped) < total
            else "; no readable image is left: check dataset.root"
        )
        raise DataError(f"{root / path}: {reason}{more}{fix}")
    shown = some([f"{printable(path)} ({reason})" for path, reason in skipped], _SHOW_BAD)
    warnings.warn(
        f"skipped {len(skipped)} unreadable image(s) of {total} under {printable(str(root))}: "
        f"{shown}; repair, re-export or remove them (or set dataset.on_bad_image=error to stop "
        f"instead)",
        BadImageWarning,
        stacklevel=2,
    )


# --- synthetic --------------------------------------------------------------------------------


def from_synthetic(ds: DictConfig, state_dir: Path) -> Rows:
    """The embedded generator, cached like decoded images (keyed on its arguments and its code)."""
    from pipeline.data import synthetic

    params = {key: int(ds[key]) for key in
              ("num_images", "image_size", "num_classes", "seed", "images_per_patient")}
    sources = sorted(Path(synthetic.__file__).parent.glob("*.py"))  # the whole generator
    code = digest_bytes(b"".join(p.read_bytes() for p in sources))
    key = digest_strings([json.dumps(params, sort_keys=True), code])[:32]

    def build() -> dict[str, np.ndarray]:
        data = synthetic.generate(**params)
        return {
            "images": data.images,
            "labels": np.asarray(data.labels, dtype=np.int64),
            "patients": np.asarray(data.patients, dtype=str),
            "classes": np.asarray(data.class_names, dtype=str),
            "digest": np.asarray(digest_bytes(np.ascontiguousarray(data.images).tobytes())),
        }

    images, path, meta = decode_cache.cached_arrays(state_dir, "synthetic", key, build)
    return Rows(
        images=images,
        images_path=path,
        labels=meta["labels"].astype(np.int64),
        classes=[str(c) for c in meta["classes"]],
        patients=[str(p) for p in meta["patients"]],
        patient_known=np.ones(len(images), dtype=bool),
        files=[f"synthetic/{i:06d}" for i in range(len(images))],
        image_digest=str(meta["digest"]),
    )


# --- medmnist ---------------------------------------------------------------------------------

# Label names for flags whose names the package is not there to tell.
_MEDMNIST_CLASSES = {"pneumoniamnist": ["normal", "pneumonia"]}


def medmnist_file(flag: str, size: int) -> str:
    """MedMNIST's own file name: ``<flag>.npz`` at 28 px, ``<flag>_<size>.npz`` otherwise."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def from_medmnist(ds: DictConfig, state_dir: Path) -> Rows:
    """Read the ``.npz`` from dataset.root (official splits); download it once if it is missing."""
    flag, size = str(ds.flag), int(ds.size)  # a MedMNIST size: the schema
    root = dataset_root(ds)
    npz = root / medmnist_file(flag, size)
    kind = not_regular(npz)
    if kind is not None:  # never read, nor downloaded into: a FIFO would block either way
        raise DataError(f"{npz} is {kind}, not a regular file: replace it with the .npz file")
    if not npz.is_file():
        _download_medmnist(flag, size, root, npz)
    index = HashIndex(index_file_for(decode_cache.cache_dir(state_dir), root))
    content = index.lookup(npz) or index.remember(npz, read_bytes(npz))
    index.save()
    image_size = int(ds.image_size)
    key = digest_strings([content, f"v{PREPROCESS_VERSION}", f"s{image_size}"])[:32]

    def build() -> dict[str, np.ndarray]:
        return _read_medmnist(npz, image_size)

    images, path, meta = decode_cache.cached_arrays(state_dir, "medmnist", key, build)
    labels = meta["labels"].astype(np.int64)
    classes = _medmnist_classes(flag, int(labels.max()) + 1 if len(labels) else 0)
    stem = npz.stem
    given = meta["split"].astype(str)
    files = [f"{stem}/{s}/{i:06d}" for s, i in zip(given, meta["row"].tolist(), strict=True)]
    return Rows(
        images=images,
        images_path=path,
        labels=labels,
        classes=classes,
        patients=list(files),
        patient_known=np.zeros(len(files), dtype=bool),
        files=files,
        image_digest=content,
        given=given,
        root=root,
    )


def _download_medmnist(flag: str, size: int, root: Path, npz: Path) -> None:
    fix = f"place {npz.name} in dataset.root={root}, or run once with a network connection"
    try:
        import medmnist
    except ImportError as exc:
        raise DataError(
            f"{npz} is missing and the medmnist package is not installed: "
            f"pip install 'medmnist>=3' (the project's [medmnist] extra), or {fix}"
        ) from exc
    info = getattr(medmnist, "INFO", {}).get(flag)
    if info is None:
        raise ConfigError(f"dataset.flag={flag!r} is not a MedMNIST dataset (e.g. pneumoniamnist)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        dataset_class = getattr(medmnist, info["python_class"])
        dataset_class(split="train", download=True, root=str(root), size=size)
    except Exception as exc:  # noqa: BLE001 - any failure of a download is the same advice
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"could not download {npz.name} into {root} ({reason}): {fix}") from exc
    if not npz.is_file():
        raise DataError(f"the medmnist download did not create {npz}: {fix}")


def _read_medmnist(npz: Path, image_size: int) -> dict[str, np.ndarray]:
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{npz} is not a readable .npz ({reason}): replace or delete it") from exc
    expected = [f"{s}_{kind}" for s in ("train", "val", "test") for kind in ("images", "labels")]
    missing = [name for name in expected if name not in arrays]
    if missing:
        raise DataError(
            f"{npz} lacks the array(s) {missing} of MedMNIST's format "
            f"(found {sorted(arrays)}): replace it with the official file"
        )
    images, labels, split, row = [], [], [], []
    for s in ("train", "val", "test"):
        imgs = arrays[f"{s}_images"]
        lab = arrays[f"{s}_labels"].reshape(len(imgs), -1)[:, 0]
        for image in imgs:
            images.append(to_square_gray(Image.fromarray(np.ascontiguousarray(image)), image_size))
        labels.append(lab.astype(np.int64))
        split += [s] * len(imgs)
        row.append(np.arange(len(imgs)))
    return {
        "images": np.stack(images) if images else np.zeros((0, image_size, image_size), np.uint8),
        "labels": np.concatenate(labels),
        "split": np.asarray(split, dtype=str),
        "row": np.concatenate(row),
    }


def _medmnist_classes(flag: str, count: int) -> list[str]:
    try:
        import medmnist

        names = medmnist.INFO[flag]["label"]
        return [normalise_class(str(names[str(i)])) for i in range(len(names))]
    except (ImportError, KeyError, AttributeError):
        pass
    return _MEDMNIST_CLASSES.get(flag, [f"class_{i}" for i in range(count)])
