"""The dataset group: the keys every dataset has, with the values they share (here, once), and
each layout's own keys (typed here, valued in conf/dataset/<name>.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from omegaconf import MISSING, DictConfig

from pipeline.common.errors import ConfigError
from pipeline.config.schema.kinds import NonNegative, Number, Positive
from pipeline.config.schema.rules import Range

# Bits of the near-duplicate hash (pipeline.data.dhash.HASH_BITS and MAX_BITS).
_BITS = Range(0, 64, note=" (bits of a 256-bit hash), or null to look for exact duplicates only")
_SPLIT_SHARE = Annotated[Number, Range(0, 1, high_open=True)]


@dataclass
class Dataset:
    """What every dataset file starts from (its defaults list names its layout's schema)."""

    name: str = MISSING  # the layout (pipeline.data.bundle knows them)
    root: str | None = MISSING  # the data's folder; ??? = pass dataset.root=<folder>
    # Binary tasks: the class whose recall is sensitivity (null: read from the class names).
    positive_class: str | None = None
    # The backbone's native size, unless set (the data's least and a network's least size:
    # pipeline.data.bundle and pipeline.models.backbones).
    image_size: int = "${backbone.input_size}"  # type: ignore[assignment]
    batch_size: Positive = 32
    # auto: 0 on CPU; with a GPU, up to 4 processes augment while it trains
    num_workers: Annotated[int | str, Literal["auto"], Range(0)] = "auto"
    # Processes that read and decode a cold scan: auto = one per core, or a number.
    decode_workers: Annotated[int | str, Literal["auto"], Range(1)] = "auto"
    val_fraction: _SPLIT_SHARE = 0.15
    test_fraction: _SPLIT_SHARE = 0.15
    # The split's own seed: runs at seed=1,2,3 (replicates) share one split.
    seed: NonNegative = 42
    # skip: leave unreadable files out with a warning | error: stop before training
    on_bad_image: Annotated[str, Literal["skip", "error"]] = "skip"
    # Duplicate images: the same bytes under two names, or the same radiograph re-encoded, rescaled
    # or re-windowed (a 256-bit difference hash of the working-size image, at most
    # near_duplicate_bits apart; copies measure 0-10, different radiographs about 30 and more).
    #   group: patients sharing a duplicate count as one in the split, so no copy straddles two
    #     splits
    #   warn: keep the split, warn with the number of groups that straddle splits
    #   error: stop when one image belongs to more than one patient
    # Splits the dataset gives (folders, a split column) are kept: groups across them are warned
    # about.
    on_duplicate: Annotated[str, Literal["group", "warn", "error"]] = "group"
    near_duplicate_bits: Annotated[int, _BITS] | None = 10  # null: exact duplicates only
    # weighted: oversample rare classes (paper 004)
    sampler: Annotated[str, Literal["none", "weighted"]] = "none"

    @staticmethod
    def cross_check(node: DictConfig, path: str) -> None:
        total = node.val_fraction + node.test_fraction
        if total >= 1:
            raise ConfigError(
                f"{path}val_fraction + {path}test_fraction = {total:g} leaves nothing to train "
                "on: keep their sum below 1"
            )


@dataclass
class Synthetic(Dataset):
    # Their bounds are the generator's (pipeline.data.synthetic.generator checks its arguments).
    num_classes: int = MISSING
    num_images: int = MISSING
    images_per_patient: int = MISSING


@dataclass
class MedMNIST(Dataset):
    flag: str = MISSING  # a MedMNIST dataset (the medmnist package knows them)
    size: Annotated[int, Literal[28, 64, 128, 224]] = MISSING


@dataclass
class ImageFolder(Dataset):
    classes: list[str] | None = MISSING
    patient_pattern: str | None = MISSING


@dataclass
class Manifest(Dataset):
    csv: str = MISSING
    path_column: str = MISSING
    label_column: str = MISSING
    patient_column: str | None = MISSING
    split_column: str | None = MISSING
    allow_outside_root: bool = MISSING


@dataclass
class Covid19Radiography(Dataset):
    class_dirs: dict[str, str] = MISSING
    patient_pattern: str | None = MISSING


@dataclass
class LabelRule:
    pattern: str = MISSING
    label: str = MISSING


@dataclass
class CovidChestXray(Dataset):
    metadata: str = MISSING
    image_dir: str = MISSING
    label_rules: list[LabelRule] = MISSING
    default_label: str | None = MISSING
    modalities: list[str] | None = MISSING
    views: list[str] | None = MISSING
    allow_outside_root: bool = MISSING


DATASETS = {
    "synthetic": Synthetic, "medmnist": MedMNIST, "imagefolder": ImageFolder,
    "manifest": Manifest, "covid19_radiography": Covid19Radiography,
    "covid_chestxray": CovidChestXray,
}
