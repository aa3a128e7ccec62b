"""The methods paragraph, the protocol table, the limitations and the checklist say what the
data support, and nothing else: a split by image, splits given by folders with a patient in two
of them, random weights, a reused test split, a temperature at its bound."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import compose
from pipeline.data.bundle import load_data
from pipeline.evidence.bootstrap import resample
from pipeline.evidence.calibration import TEMPERATURES, Calibration
from pipeline.selection.assessment import assess_one, serve
from pipeline.selection.checklist import checklist
from pipeline.selection.claims import sentences
from pipeline.selection.comparison import table_row
from pipeline.selection.competition import Candidate
from pipeline.selection.limitations import limitations
from pipeline.selection.methods import methods_paragraph, protocol_rows
from pipeline.selection.sections import per_class_section
from tests.data.xray_files import write_class_tree, write_image
from tests.selection.by_hand import assessed_for, evaluation, facts_for, fake_run, versus


def load(state_dir: Path, root: Path, *more: str):
    return load_data(compose(["dataset=imagefolder", f"dataset.root={root}",
                              "dataset.image_size=32", "dataset.positive_class=covid",
                              f"state_dir={state_dir}", *more]))


@pytest.fixture
def by_image(tmp_path, state_dir):
    root = tmp_path / "flat"
    write_class_tree(root, {"covid": 24, "normal": 24})
    with pytest.warns(UserWarning, match="split is by image"):
        return load(state_dir, root, "dataset.val_fraction=0.25", "dataset.test_fraction=0.25")


@pytest.fixture
def given_with_overlap(tmp_path, state_dir):
    """train/ and test/ folders as a dataset gives them; person0 has images in both."""
    root = tmp_path / "given"
    for split, people in (("train", range(0, 12)), ("test", [0, *range(12, 18)])):
        for person in people:
            cls = "covid" if person % 2 else "normal"
            for view in range(2):
                write_image(root / split / cls / f"person{person}_{split}{view}.png",
                            seed=person * 10 + view + (5 if split == "test" else 0))
    return load(state_dir, root, "dataset.val_fraction=0.25",
                "dataset.patient_pattern='^(person\\d+)_'")


def test_a_split_by_image_is_said_to_be_one(by_image):
    assessed = assessed_for(by_image)
    facts = facts_for(by_image)
    text = methods_paragraph(facts, assessed, [])
    assert "by image, as the data give no patient identifiers" in text
    assert "grouped by patient" not in text and "no patient has" not in text
    assert "training (24 images), validation (12) and test (12) sets" in text
    assert "resampling images" in text and "paired image bootstrap" in text
    assert any("no patient identifiers" in line for line in limitations(facts, assessed))
    rows = {item: value for _, item, value in checklist(facts, assessed, gallery=False)}
    assert rows["Level at which partitions are disjoint"] == "image (no patient identifiers)"
    assert dict(protocol_rows(facts))["split unit"] == "image"


def test_splits_given_by_folders_with_a_shared_patient_are_said_to_be_so(given_with_overlap):
    bundle = given_with_overlap
    assert bundle.splits_given == ["test", "train"] and bundle.patient_overlap() == 1
    assessed = assessed_for(bundle)
    facts = facts_for(bundle)
    text = methods_paragraph(facts, assessed, [])
    assert ("test, train as given by the dataset, val carved from its training rows by the "
            "pipeline, with 1 patient(s) having images in more than one split") in text
    assert "no patient has images in two splits" not in text
    assert "carved by the pipeline, stratified by class" not in text
    assert any("1 patient(s) have images in more than one split (as the dataset gave the splits)"
               in line for line in limitations(facts, assessed))
    rows = {item: value for _, item, value in checklist(facts, assessed, gallery=False)}
    assert rows["Level at which partitions are disjoint"].startswith("not available: ")


def test_a_split_carved_by_patient_is_said_to_keep_patients_apart(tmp_path, state_dir):
    root = tmp_path / "people"
    for person in range(16):
        for view in range(2):
            write_image(root / ("covid" if person % 2 else "normal") / f"person{person}_{view}.png",
                        seed=person * 10 + view)
    bundle = load(state_dir, root, "dataset.val_fraction=0.25", "dataset.test_fraction=0.25",
                  "dataset.patient_pattern='^(person\\d+)_'")
    text = methods_paragraph(facts_for(bundle), assessed_for(bundle), [])
    assert ("carved by the pipeline, stratified by class, grouped by patient: no patient has "
            "images in two splits") in text
    assert "resampling patients" in text


def test_random_weights_are_named_and_are_a_limitation(by_image):
    assessed = assessed_for(by_image)
    facts = facts_for(by_image)
    text = methods_paragraph(facts, assessed, [])
    assert "Initial weights: random weights (no pretraining) for mobilenet_v2, resnet18" in text
    assert "images were 32 px and each trial trained for at most 3 epochs" in text
    assert "resnet18: 4 trials (3 complete, 1 pruned, 0 failed)" in text
    assert "random weights" in limitations(facts, assessed)[0]
    pretrained = facts_for(by_image, weights={"imagenet:resnet18.a1_in1k": ["resnet18"]})
    assert "ImageNet weights (resnet18.a1_in1k) for resnet18" in methods_paragraph(
        pretrained, assessed, [])
    assert not any("random weights" in line for line in limitations(pretrained, assessed))


def test_weights_taken_from_a_logged_run_name_that_run(by_image):
    assessed = assessed_for(by_image)
    transferred = facts_for(by_image, weights={"run:0123abcd": ["resnet18"]})
    text = methods_paragraph(transferred, assessed, [])
    assert ("Initial weights: the backbone of this pipeline's run 0123abcd (its head not taken) "
            "for resnet18") in text
    assert not any("random weights" in line for line in limitations(transferred, assessed))


def test_a_reused_test_split_is_counted_in_every_place(by_image):
    assessed = assessed_for(by_image)
    facts = facts_for(by_image, test_uses=3)
    said = "this test split has now been used for selection 3 times"
    assert said in methods_paragraph(facts, assessed, [])
    assert said in sentences(assessed, None, 3)
    assert any("used for selection 3 times" in line for line in limitations(facts, assessed))
    assert "used after selection only, by this selection" in methods_paragraph(
        facts_for(by_image), assessed, [])
    assert not any("used for selection" in s for s in sentences(assessed, None, 1))


def test_a_temperature_at_its_bound_is_reported_as_such(by_image):
    assessed = assessed_for(by_image)
    champion = assessed[0]
    bound = replace(champion, served=replace(champion.served, calibration=Calibration(
        TEMPERATURES[1], champion.threshold)))
    facts = facts_for(by_image)
    assert "at its search bound" in methods_paragraph(facts, [bound, *assessed[1:]], [])
    assert any("stopped at its search bound" in line
               for line in limitations(facts, [bound, *assessed[1:]]))


def test_every_checklist_item_has_a_value_or_says_why_not(by_image):
    assessed = [assessed_for(by_image)[0], versus(assessed_for(by_image)[1], -0.02, 0.4)]
    rows = checklist(facts_for(by_image), assessed, gallery=True)
    names = [item for _, item, _ in rows]
    for needed in ("Data source and partitions", "Level at which partitions are disjoint",
                   "Counts per partition", "How the final model was selected", "Ensembling",
                   "Metrics with uncertainty", "Internal testing", "External testing",
                   "Operating point and how it was chosen"):
        assert needed in names
    for _, item, value in rows:
        assert value and (not value.startswith("not available") or ": " in value), item
    external = dict((item, value) for _, item, value in rows)["External testing"]
    assert external.startswith("not available: no external validation")


def test_a_multiclass_report_gives_each_class_its_own_results_with_intervals(tmp_path, state_dir):
    root = tmp_path / "three"
    write_class_tree(root, {"covid": 16, "normal": 16, "pneumonia": 16})
    with pytest.warns(UserWarning):
        bundle = load(state_dir, root, "dataset.val_fraction=0.25", "dataset.test_fraction=0.25",
                      "dataset.positive_class=null")
    rng = np.random.default_rng(0)
    ev = evaluation(bundle, 0)
    for name in ("networks", "val_networks"):
        target = ev.target if name == "networks" else ev.val_target
        probs = rng.dirichlet(np.ones(3), len(target))
        probs[np.arange(len(target)), target] += 0.5
        setattr(ev, name, (probs / probs.sum(axis=1, keepdims=True))[None])
    ev.positive_index = None
    samples = resample(ev.patients, ev.target, 50, 0, "image")
    item = assess_one(Candidate("resnet18", fake_run("r"), 0.8, 1, 0), ev,
                      serve(ev, True, "youden"), samples, "val_auroc")
    assert item.threshold is None and set(item.per_class) == {"covid", "normal", "pneumonia"}
    row = table_row(item, "val_auroc", winner=True)
    covid = row["per_class"]["covid"]
    assert set(covid) == {"auroc", "auroc_ci", "sensitivity", "sensitivity_ci", "specificity",
                          "specificity_ci"}
    html = per_class_section([row], bundle.classes)
    assert "id=\"per-class-table\"" in html and "pneumonia" in html
    assert f"{covid['auroc']:.3f} [{covid['auroc_ci'][0]:.3f}, {covid['auroc_ci'][1]:.3f}]" in html
