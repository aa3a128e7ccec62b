"""Bad input: one-line errors that name the path, class or column and the fix; bad images are
skipped with one warning (or stop the run before training)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
from xray_files import write_class_tree, write_image

from pipeline.common.errors import ConfigError, DataError
from pipeline.data.bundle import load_data
from pipeline.data.sources import BadImageWarning


def error_of(make_cfg, *overrides: str) -> str:
    with pytest.raises(DataError) as info:
        load_data(make_cfg(*overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_root_names_path_and_expected_layout(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "nowhere"
    message = error_of(make_cfg, "dataset=imagefolder", f"dataset.root={root}")
    assert str(root) in message and "does not exist" in message
    assert "one folder per class" in message


def test_unset_root_is_a_config_error(make_cfg) -> None:
    with pytest.raises(ConfigError, match="dataset.root is not set"):
        load_data(make_cfg("dataset=imagefolder"))


def test_wrong_layout_names_what_was_expected(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "flat"
    write_image(root / "loose.png")
    message = error_of(make_cfg, "dataset=imagefolder", f"dataset.root={root}")
    assert str(root) in message and "no class folders" in message


def test_radiography_layout_lists_missing_folders_and_nested_hint(tmp_path: Path,
                                                                   make_cfg) -> None:
    inner = tmp_path / "zip" / "COVID-19_Radiography_Dataset"
    for folder in ("COVID", "Normal", "Viral Pneumonia", "Lung_Opacity"):
        write_image(inner / folder / "images" / "a.png")
    message = error_of(make_cfg, "dataset=covid19_radiography", f"dataset.root={tmp_path / 'zip'}")
    assert "'COVID'" in message and "covid19_radiography expects" in message
    assert f"did you mean dataset.root={inner}" in message


def test_chestxray_root_without_metadata_names_expected_layout(tmp_path: Path,
                                                               make_cfg) -> None:
    write_class_tree(tmp_path / "r", {"a": 2})
    message = error_of(make_cfg, "dataset=covid_chestxray", f"dataset.root={tmp_path / 'r'}")
    assert str(tmp_path / "r" / "metadata.csv") in message and "metadata.csv and images/" in message


def test_split_folders_mixed_with_class_folders(tmp_path: Path, make_cfg) -> None:
    write_class_tree(tmp_path / "r" / "train", {"a": 2, "b": 2})
    write_class_tree(tmp_path / "r", {"extra": 2})
    message = error_of(make_cfg, "dataset=imagefolder", f"dataset.root={tmp_path / 'r'}")
    assert "mixes split folders (train) with other folders (extra)" in message


def test_class_with_too_few_images_names_class_count_and_fix(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    write_class_tree(root, {"common": 10, "rare": 2})
    message = error_of(make_cfg, "dataset=imagefolder", f"dataset.root={root}",
                       "dataset.image_size=32")
    assert "class 'rare' has 2 images" in message
    assert "dataset.val_fraction=0" in message and "add images of 'rare'" in message


def test_class_with_too_few_patients(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    rows = []
    for i in range(12):  # 'rare' has 4 images but only 2 patients
        label = "rare" if i < 4 else "common"
        patient = f"r{i % 2}" if label == "rare" else f"c{i}"
        rows.append((str(write_image(root / f"{i}.png", seed=i)), label, patient))
    pd.DataFrame(rows, columns=["path", "label", "patient_id"]).to_csv(root / "m.csv", index=False)
    message = error_of(make_cfg, "dataset=manifest", f"dataset.root={root}", "dataset.csv=m.csv",
                       "dataset.image_size=32")
    assert "class 'rare' has 4 images of 2 patients" in message


def test_class_with_no_images(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 5, "b": 5})
    (root / "empty_class").mkdir()
    message = error_of(make_cfg, "dataset=imagefolder", f"dataset.root={root}",
                       "dataset.image_size=32")
    assert "class 'empty_class'" in message and "no images" in message


def test_empty_after_filters_names_the_filters(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "cxr"
    write_image(root / "images" / "a.png")
    pd.DataFrame([("1", "Pneumonia/Viral/COVID-19", "L", "X-ray", "a.png"),
                  ("2", "todo", "PA", "X-ray", "a.png")],
                 columns=["patientid", "finding", "view", "modality", "filename"]).to_csv(
        root / "metadata.csv", index=False)
    message = error_of(make_cfg, "dataset=covid_chestxray", f"dataset.root={root}")
    assert str(root) in message and "after the filters" in message
    assert "finding not todo/empty: 1" in message and "view in" in message and ": 0" in message


@pytest.mark.parametrize("dataset", ["manifest", "covid_chestxray"])
def test_csv_missing_column_names_it_and_lists_found(tmp_path: Path, make_cfg,
                                                     dataset: str) -> None:
    root = tmp_path / "r"
    root.mkdir()
    csv = root / ("m.csv" if dataset == "manifest" else "metadata.csv")
    pd.DataFrame([("a.png", "x")], columns=["filepath", "finding"]).to_csv(csv, index=False)
    extra = ["dataset.csv=m.csv"] if dataset == "manifest" else []
    message = error_of(make_cfg, f"dataset={dataset}", f"dataset.root={root}", *extra)
    missing = "'path'" if dataset == "manifest" else "'patientid'"
    assert str(csv) in message and f"has no column {missing}" in message
    assert "columns found: filepath, finding" in message


def test_manifest_bad_split_value_names_row(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    write_image(root / "a.png")
    pd.DataFrame([("a.png", "x", "training")], columns=["path", "label", "split"]).to_csv(
        root / "m.csv", index=False)
    message = error_of(make_cfg, "dataset=manifest", f"dataset.root={root}", "dataset.csv=m.csv")
    assert "row 2" in message and "'training'" in message and "dataset.split_column=null" in message


def bad_files_tree(root: Path) -> None:
    write_class_tree(root, {"a": 6, "b": 6})
    (root / "a" / "notes.txt").write_text("not an image")
    good = sorted((root / "b").glob("*.png"))[0].read_bytes()
    (root / "b" / "zz_truncated.png").write_bytes(good[: len(good) // 3])


def test_bad_images_skipped_with_one_warning(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    bad_files_tree(root)
    with pytest.warns(BadImageWarning) as record:
        bundle = load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                                    "dataset.image_size=32", "dataset.positive_class=b"))
    record = [w for w in record if issubclass(w.category, BadImageWarning)]
    assert len(record) == 1
    text = str(record[0].message)
    assert "skipped 2 unreadable image(s) of 14" in text and "a/notes.txt" in text
    assert "b/zz_truncated.png" in text and "\n" not in text
    assert sorted(path for path, _ in bundle.skipped) == ["a/notes.txt", "b/zz_truncated.png"]
    assert len(bundle.labels) == 12


def test_bad_images_stop_the_run_with_on_bad_image_error(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    bad_files_tree(root)
    message = error_of(make_cfg, "dataset=imagefolder", f"dataset.root={root}",
                       "dataset.on_bad_image=error", "dataset.image_size=32")
    assert str(root / "a" / "notes.txt") in message and "not an image file" in message
    assert "2 of 14 files" in message and "dataset.on_bad_image=skip" in message


def test_missing_file_in_metadata_is_skipped_as_bad(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "cxr"
    rows = []
    for p in range(8):
        name = f"{p}.png"
        if p != 3:
            write_image(root / "images" / name, seed=p)
        finding = "COVID-19" if p % 2 else "No Finding"
        rows.append((str(p), finding, "PA", "X-ray", name))
    pd.DataFrame(rows, columns=["patientid", "finding", "view", "modality", "filename"]).to_csv(
        root / "metadata.csv", index=False)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        bundle = load_data(make_cfg("dataset=covid_chestxray", f"dataset.root={root}",
                                    "dataset.image_size=32", "dataset.val_fraction=0.25",
                                    "dataset.test_fraction=0.25"))
    assert bundle.skipped == [("images/3.png", "file not found")]


def test_positive_class_must_be_a_class(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 5, "b": 5})
    with pytest.raises(ConfigError, match=r"positive_class='covid' is not one of .*'a', 'b'"):
        load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                           "dataset.positive_class=covid", "dataset.image_size=32"))


@pytest.mark.parametrize(
    ("override", "text"),
    [("dataset.val_fraction=0.6", "leaves nothing to train on"),
     ("dataset.on_bad_image=ignore", "use skip or error"),
     ("dataset.sampler=balanced", "use none or weighted"),
     ("dataset.test_fraction=-0.1", "must be in [0, 1)")],
)
def test_bad_config_values(make_cfg, override: str, text: str) -> None:
    with pytest.raises(ConfigError, match=text.replace("[", r"\[").replace(")", r"\)")):
        load_data(make_cfg("dataset.num_images=60", "dataset.image_size=32",
                           "dataset.test_fraction=0.5" if "val" in override else "dataset.seed=1",
                           override))
