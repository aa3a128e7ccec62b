"""What the comparison supports, in words: Holm-adjusted, never "the same", a reversal said."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.selection.claims import sentences
from pipeline.selection.recipes import Recipes
from pipeline.selection.statistics import Paired
from tests.data.xray_files import write_class_tree
from tests.selection.by_hand import assessed_for, versus
from tests.selection.test_methods import load


@pytest.fixture
def pair(tmp_path, state_dir):
    root = tmp_path / "flat"
    write_class_tree(root, {"covid": 24, "normal": 24})
    with pytest.warns(UserWarning):
        return assessed_for(load(state_dir, root, "dataset.val_fraction=0.25",
                                 "dataset.test_fraction=0.25"))


def test_a_non_significant_difference_is_not_called_the_same(pair):
    said = sentences([pair[0], versus(pair[1], -0.05, 0.41)], None, 1)
    assert said == ["mobilenet_v2 against the champion resnet18: no significant difference "
                    "detected (Holm-adjusted p = 0.41)"]
    assert not any("same" in s or "told apart" in s for s in said)


def test_a_backbone_significantly_better_on_test_is_said_so(pair):
    said = sentences([pair[0], versus(pair[1], 0.12, 0.004)], None, 1)
    assert said == ["mobilenet_v2 is significantly better than the champion resnet18 on test "
                    "(ΔAUROC +0.120 [+0.020, +0.220], Holm-adjusted p = 0.004, paired patient "
                    "bootstrap): the validation ranking does not hold on test"]
    worse = sentences([pair[0], versus(pair[1], -0.2, 0.0004)], None, 1)
    assert worse[0].startswith("the champion resnet18 is significantly better than "
                               "mobilenet_v2 on test (ΔAUROC -0.200") and "p < 0.001" in worse[0]


def test_a_validation_ranking_that_reverses_on_test_is_said_so(pair):
    said = sentences([pair[0], versus(pair[1], 0.03, 0.6)], None, 1)
    assert said[0].endswith("no significant difference detected (Holm-adjusted p = 0.60)")
    assert said[1].startswith("the validation ranking reverses on test: mobilenet_v2 has a "
                              "higher test AUROC than the champion resnet18")


def test_the_search_gain_on_test_is_worded_with_its_interval_and_p(pair):
    def run(run_id, **tags):
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(
            tags=tags, metrics={"best_val_auroc": 0.9 if run_id == "s" else 0.8}))

    rec = Recipes(run("s", backbone="resnet18"), run("b", backbone="mobilenet_v2",
                                                      baseline="003"), "val_auroc")
    rec.test = Paired(0.031, (-0.052, 0.114), 0.46, "paired patient bootstrap", 2000)
    said = sentences(pair[:1], rec, 1)
    assert said[0].startswith("search gain over the papers' recipes on test: +0.031 "
                              "[-0.052, +0.114], p = 0.46")
    assert said[1].startswith("search gain over the papers' recipes on validation (optimistic: "
                              "the same validation scores chose the searched run): +0.100 "
                              "val_auroc")
    assert rec.as_json()["ci"] == [-0.052, 0.114] and rec.as_json()["p_value"] == 0.46
