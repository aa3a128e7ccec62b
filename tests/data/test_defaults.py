"""Defaults under which the data's numbers mean what they say: the positive class, the unit of
the split, Kermany's patients, and replicate seeds that share one split."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from xray_files import write_class_tree, write_image

from pipeline.common.errors import DataError
from pipeline.data.bundle import load_data
from pipeline.data.positives import infer_positive
from pipeline.data.splits import ImageSplitWarning
from pipeline.describe_data import main as describe_main


def folder(make_cfg, root: Path, *more: str):
    return load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                              "dataset.image_size=32", *more))


def test_the_positive_class_is_read_from_the_class_names(tmp_path, make_cfg, capfd):
    root = tmp_path / "kaggle"
    write_class_tree(root, {"COVID": 6, "Normal": 6})
    bundle = folder(make_cfg, root)
    # Alphabetical order puts covid first: index 1 would have scored "normal" as the finding.
    assert bundle.classes == ["covid", "normal"] and bundle.positive_class == "covid"
    assert "positive class: covid (read from the class names" in capfd.readouterr().err
    assert folder(make_cfg, root, "dataset.positive_class=normal").positive_class == "normal"
    for names, positive in ((["normal", "pneumonia"], "pneumonia"),
                            (["covid", "non_covid"], "covid"), (["abnormal", "normal"], "abnormal"),
                            (["COVID-19", "Normal"], "COVID-19"), (["negative", "positive"],
                                                                   "positive")):
        assert infer_positive(names) == positive


def test_no_name_that_says_which_is_positive_stops_and_asks(tmp_path, make_cfg):
    root = tmp_path / "pets"
    write_class_tree(root, {"cat": 6, "dog": 6})
    with pytest.raises(DataError, match=r"set dataset.positive_class=<one of cat, dog>"):
        folder(make_cfg, root)
    with pytest.raises(DataError, match="both name a finding"):
        infer_positive(["covid", "pneumonia"])


def test_without_patient_ids_the_split_is_by_image_and_says_so(tmp_path, make_cfg):
    root = tmp_path / "no_ids"
    write_class_tree(root, {"covid": 6, "normal": 6})
    with pytest.warns(ImageSplitWarning, match="patient_pattern"):
        bundle = folder(make_cfg, root)
    assert bundle.summary()["split_unit"] == "image"
    assert bundle.summary()["positive_class"] == "covid"


def test_kermany_file_names_split_by_patient_by_default(tmp_path, make_cfg):
    root = tmp_path / "chest_xray"
    names = {"NORMAL": ["IM-{p:04d}-0001.jpeg", "IM-{p:04d}-0002.jpeg",
                        "NORMAL2-IM-{p:04d}-0001.jpeg"],
             "PNEUMONIA": ["person{p}_bacteria_{k}.jpeg", "person{p}_virus_{k}.jpeg"]}
    seed = 0
    for cls, patterns in names.items():
        for p in range(6):
            for k, pattern in enumerate(patterns):
                seed += 1
                write_image(root / "train" / cls / pattern.format(p=p, k=k), seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageSplitWarning)
        bundle = folder(make_cfg, root)
    assert bundle.split_unit == "patient" and bundle.positive_class == "pneumonia"
    assert {"IM-0003", "NORMAL2-IM-0003", "person3"} <= set(bundle.patients.tolist())
    assert len(set(bundle.patients.tolist())) == 18  # 6 IM-, 6 NORMAL2-IM-, 6 person
    assert bundle.patient_overlap() == 0


def test_seed_replicates_share_one_split(make_cfg):
    fingerprints = {load_data(make_cfg("dataset.num_images=60", "dataset.image_size=32",
                                       f"seed={seed}")).fingerprint for seed in (1, 2, 3)}
    assert len(fingerprints) == 1
    other = load_data(make_cfg("dataset.num_images=60", "dataset.image_size=32",
                               "dataset.seed=7")).fingerprint
    assert other not in fingerprints


def test_describe_data_reports_the_positive_class_and_the_split_unit(tmp_path, capsys):
    root = tmp_path / "kaggle"
    write_class_tree(root, {"Normal": 6, "Pneumonia": 6})
    with pytest.warns(ImageSplitWarning, match="split is by image"):
        assert describe_main(["dataset=imagefolder", f"dataset.root={root}",
                              "dataset.image_size=32", f"state_dir={tmp_path / 'state'}"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["positive_class"] == "pneumonia" and last["split_unit"] == "image"
