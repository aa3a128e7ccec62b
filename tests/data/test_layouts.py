"""Every dataset layout, end to end through load_data, on small trees the tests write."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from xray_files import write_class_tree, write_image

from pipeline.common.errors import DataError
from pipeline.data.bundle import DataBundle, load_data


def assert_well_formed(bundle: DataBundle) -> None:
    n = len(bundle.labels)
    assert bundle.images.shape == (n, bundle.image_size, bundle.image_size)
    assert bundle.images.dtype == np.uint8
    assert bundle.labels.dtype == np.int64
    assert len(bundle.patients) == len(bundle.split) == len(bundle.files) == n
    assert set(bundle.split.tolist()) <= {"train", "val", "test"}
    assert bundle.patient_overlap() == 0
    assert len(bundle.fingerprint) == 16 and int(bundle.fingerprint, 16) >= 0


def test_imagefolder_flat(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "kaggle"
    write_class_tree(root, {"NORMAL": 8, "Viral Pneumonia": 8})
    (root / ".DS_Store").write_text("junk")
    bundle = load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                                "dataset.image_size=32"))
    assert_well_formed(bundle)
    assert bundle.classes == ["normal", "viral_pneumonia"]
    assert bundle.class_counts() == {"normal": 8, "viral_pneumonia": 8}
    assert bundle.files[0].startswith("NORMAL/") and not bundle.skipped
    for split in ("train", "val", "test"):
        assert all(v > 0 for v in bundle.class_counts(split).values())
    assert bundle.positive_class == "viral_pneumonia"  # read from the class names


def test_imagefolder_classes_option_chooses_and_orders(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "kaggle"
    write_class_tree(root, {"covid": 5, "normal": 5, "other": 5})
    bundle = load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                                "dataset.image_size=32", "dataset.classes=[normal,covid]",
                                "dataset.positive_class=covid"))
    assert bundle.classes == ["normal", "covid"] and bundle.positive_class == "covid"
    assert not any(f.startswith("other/") for f in bundle.files)


def test_kermany_given_splits_are_used(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "chest_xray"
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        write_class_tree(root / split, {"NORMAL": n, "PNEUMONIA": n}, start_seed=len(split) * 10)
    bundle = load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                                "dataset.image_size=32"))
    assert_well_formed(bundle)
    assert bundle.classes == ["normal", "pneumonia"]
    for file, split in zip(bundle.files, bundle.split, strict=True):
        assert file.split("/")[0] == split
    assert {s: int((bundle.split == s).sum()) for s in ("train", "val", "test")} == {
        "train": 12, "val": 4, "test": 6}


def test_kermany_without_val_carves_it_from_train(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "chest_xray"
    write_class_tree(root / "train", {"NORMAL": 10, "PNEUMONIA": 10})
    write_class_tree(root / "test", {"NORMAL": 3, "PNEUMONIA": 3}, start_seed=50)
    bundle = load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                                "dataset.image_size=32", "dataset.val_fraction=0.2"))
    val_files = [f for f, s in zip(bundle.files, bundle.split, strict=True) if s == "val"]
    test_files = [f for f, s in zip(bundle.files, bundle.split, strict=True) if s == "test"]
    assert val_files and all(f.startswith("train/") for f in val_files)
    assert len(test_files) == 6 and all(f.startswith("test/") for f in test_files)


def test_patient_pattern_groups_a_patients_images(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "kermany_flat"
    for person in range(8):
        for view in range(3):
            cls = "PNEUMONIA" if person % 2 else "NORMAL"
            write_image(root / cls / f"person{person}_virus_{view}.png", seed=person * 3 + view)
    bundle = load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                                "dataset.image_size=32", "dataset.val_fraction=0.25",
                                "dataset.test_fraction=0.25",
                                "dataset.patient_pattern='^(person\\d+)_'"))
    assert sorted(set(bundle.patients.tolist())) == [f"person{i}" for i in range(8)]
    assert bundle.patient_overlap() == 0


def test_covid19_radiography_layout(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for folder in ("COVID", "Normal", "Viral Pneumonia", "Lung_Opacity"):
        write_class_tree(root / folder, {"images": 4}, start_seed=10 * len(folder))
        write_class_tree(root / folder, {"masks": 4}, start_seed=99)
    (root / "COVID.metadata.xlsx").write_bytes(b"not data")
    bundle = load_data(make_cfg("dataset=covid19_radiography", f"dataset.root={root}",
                                "dataset.image_size=32", "dataset.val_fraction=0.25",
                                "dataset.test_fraction=0.25"))
    assert_well_formed(bundle)
    assert bundle.classes == ["covid", "normal", "viral_pneumonia", "lung_opacity"]
    assert all("/images/" in f for f in bundle.files)  # masks ignored
    assert bundle.class_counts() == dict.fromkeys(bundle.classes, 4)
    assert bundle.positive_class is None  # four classes: not a binary task


def test_covid19_radiography_class_can_be_dropped(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "db"
    for folder in ("COVID", "Normal"):
        write_class_tree(root / folder, {"images": 4}, start_seed=10 * len(folder))
    bundle = load_data(make_cfg("dataset=covid19_radiography", f"dataset.root={root}",
                                "dataset.image_size=32", "~dataset.class_dirs.viral_pneumonia",
                                "~dataset.class_dirs.lung_opacity", "dataset.val_fraction=0.25",
                                "dataset.test_fraction=0.25"))
    assert bundle.classes == ["covid", "normal"] and bundle.positive_class == "covid"


def write_chestxray(root: Path) -> pd.DataFrame:
    """A covid-chestxray-dataset lookalike with the rows the filters must drop."""
    rows = []
    for p in range(12):
        finding = "Pneumonia/Viral/COVID-19" if p < 6 else ["No Finding", "Pneumonia/Bacterial",
                                                            "Tuberculosis"][p % 3]
        for k in range(2):
            rows.append((f"P{p}", finding, "PA" if k == 0 else "AP Supine", "X-ray",
                         f"p{p}_{k}.png"))
    rows += [("P90", "todo", "PA", "X-ray", "todo.png"), ("P91", "", "PA", "X-ray", "empty.png"),
             ("P92", "Pneumonia/Viral/COVID-19", "Axial", "CT", "ct.png"),
             ("P93", "Pneumonia/Viral/COVID-19", "L", "X-ray", "lateral.png")]
    frame = pd.DataFrame(rows, columns=["patientid", "finding", "view", "modality", "filename"])
    frame["folder"] = "images"
    for n, name in enumerate(frame["filename"]):
        write_image(root / "images" / name, ("L", "RGB", "RGBA", "P")[n % 4], seed=n)
    frame.to_csv(root / "metadata.csv", index=False)
    return frame


def test_covid_chestxray_filters_and_patients(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "covid-chestxray"
    write_chestxray(root)
    bundle = load_data(make_cfg("dataset=covid_chestxray", f"dataset.root={root}",
                                "dataset.image_size=32", "dataset.val_fraction=0.25",
                                "dataset.test_fraction=0.25"))
    assert_well_formed(bundle)
    assert bundle.classes == ["covid", "non_covid"] and bundle.positive_class == "covid"
    assert bundle.class_counts() == {"covid": 12, "non_covid": 12}
    names = {Path(f).name for f in bundle.files}
    assert not names & {"todo.png", "empty.png", "ct.png", "lateral.png"}
    assert set(bundle.patients.tolist()) == {f"P{p}" for p in range(12)}


def test_covid_chestxray_filters_are_config(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "covid-chestxray"
    write_chestxray(root)
    bundle = load_data(make_cfg("dataset=covid_chestxray", f"dataset.root={root}",
                                "dataset.image_size=32", "dataset.views=null",
                                "dataset.modalities=null", "dataset.val_fraction=0.25",
                                "dataset.test_fraction=0.25"))
    names = {Path(f).name for f in bundle.files}
    assert {"ct.png", "lateral.png"} <= names and "todo.png" not in names


def test_manifest_with_given_splits_and_patients(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "data"
    rows = []
    for i in range(18):
        path = f"imgs/{i}.png"
        write_image(root / path, seed=i)
        rows.append((path, ["a", "b"][i % 2], f"pt{i // 2}", ["train", "train", "valid", "test"][
            (i // 2) % 4]))
    pd.DataFrame(rows, columns=["file_path", "diagnosis", "subject", "fold"]).to_csv(
        root / "list.csv", index=False)
    bundle = load_data(make_cfg("dataset=manifest", f"dataset.root={root}", "dataset.csv=list.csv",
                                "dataset.path_column=file_path", "dataset.label_column=diagnosis",
                                "dataset.patient_column=subject", "dataset.split_column=fold",
                                "dataset.image_size=32", "dataset.positive_class=b"))
    assert_well_formed(bundle)
    expected = {r[0]: {"valid": "val"}.get(r[3], r[3]) for r in rows}
    assert dict(zip(bundle.files, bundle.split, strict=True)) == expected
    assert bundle.patients[0] == "pt0"


def test_manifest_without_optional_columns_is_split_by_fractions(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "data"
    rows = [(str(write_image(root / f"{i}.png", seed=i)), "sick" if i % 3 else "well")
            for i in range(15)]
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(tmp_path / "m.csv", index=False)
    bundle = load_data(make_cfg("dataset=manifest", f"dataset.root={root}",
                                f"dataset.csv={tmp_path / 'm.csv'}", "dataset.image_size=32",
                                "dataset.val_fraction=0.2", "dataset.test_fraction=0.2"))
    assert bundle.classes == ["sick", "well"]
    assert set(bundle.split.tolist()) == {"train", "val", "test"}
    assert bundle.patients.tolist() == bundle.files  # no patient id: each image its own


def write_medmnist_npz(path: Path, size: int = 28, per_split: int = 12) -> None:
    """A file in MedMNIST's own format: <split>_images (N, S, S) uint8, <split>_labels (N, 1)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (per_split, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(per_split) % 2).reshape(-1, 1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def test_medmnist_reads_the_npz_with_official_splits(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "medmnist"
    write_medmnist_npz(root / "pneumoniamnist.npz", size=28)
    bundle = load_data(make_cfg("dataset=medmnist", f"dataset.root={root}", "dataset.size=28",
                                "dataset.image_size=32"))
    assert_well_formed(bundle)
    assert bundle.classes == ["normal", "pneumonia"] and bundle.positive_class == "pneumonia"
    assert {s: len(bundle.indices(s)) for s in ("train", "val", "test")} == dict.fromkeys(
        ("train", "val", "test"), 12)
    assert bundle.files[0] == "pneumoniamnist/train/000000"


def test_medmnist_offline_without_package_says_how_to_fix(tmp_path: Path, make_cfg,
                                                          monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "medmnist", None)  # import fails: package not installed
    root = tmp_path / "empty"
    with pytest.raises(DataError) as info:
        load_data(make_cfg("dataset=medmnist", f"dataset.root={root}", "dataset.size=64"))
    message = str(info.value)
    assert "pneumoniamnist_64.npz" in message and str(root) in message
    assert "pip install" in message and "\n" not in message


def test_medmnist_failed_download_says_how_to_fix(tmp_path: Path, make_cfg, monkeypatch) -> None:
    class Offline:
        def __init__(self, **kwargs: object) -> None:
            raise OSError("Temporary failure in name resolution")

    fake = types.ModuleType("medmnist")
    fake.INFO = {"pneumoniamnist": {"python_class": "PneumoniaMNIST",
                                    "label": {"0": "normal", "1": "pneumonia"}}}
    fake.PneumoniaMNIST = Offline
    monkeypatch.setitem(sys.modules, "medmnist", fake)
    root = tmp_path / "medmnist"
    with pytest.raises(DataError, match=r"could not download pneumoniamnist_64\.npz.*name "
                                        r"resolution.*place pneumoniamnist_64\.npz"):
        load_data(make_cfg("dataset=medmnist", f"dataset.root={root}"))


def test_synthetic_default_is_grouped_by_patient(make_cfg) -> None:
    bundle = load_data(make_cfg("dataset.num_images=60", "dataset.image_size=32"))
    assert_well_formed(bundle)
    assert bundle.classes == ["normal", "covid", "pneumonia"]
    assert bundle.files[5] == "synthetic/000005" and bundle.root is None
    assert sum(bundle.class_counts().values()) == 60

