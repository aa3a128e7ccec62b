"""Selections made by hand for the wording tests: a real data set's summary, real (random)
predictions, assessed as select_best assesses them, without training or a store."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from pipeline.data.bundle import DataBundle
from pipeline.evidence.bootstrap import resample
from pipeline.selection.assessment import Assessed, assess_one, serve
from pipeline.selection.competition import Candidate
from pipeline.selection.evaluation import Evaluation
from pipeline.selection.facts import Facts, data_fields
from pipeline.selection.statistics import Paired


def fake_run(run_id: str, **tags: str) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(
        params={"objective.cv_folds": "1", "trainer.max_epochs": "3"},
        tags={"image_size": "32", "seed": "42", **tags}, metrics={}))


def evaluation(bundle: DataBundle, seed: int) -> Evaluation:
    rng = np.random.default_rng(seed)
    test, val = bundle.indices("test"), bundle.indices("val")

    def probs(rows: np.ndarray) -> np.ndarray:
        p = np.clip(0.5 + 0.2 * (bundle.labels[rows] - 0.5) + rng.normal(0, 0.25, len(rows)),
                    0.01, 0.99)
        return np.column_stack([1 - p, p])[None]

    return Evaluation(
        run_id=f"run{seed}", networks=probs(test), target=bundle.labels[test],
        files=[bundle.files[r] for r in test], classes=list(bundle.classes), positive_index=1,
        patients=[str(p) for p in bundle.patients[test]], val_networks=probs(val),
        val_target=bundle.labels[val], val_folds=np.zeros(len(val), dtype=int),
        data=bundle.summary())


def assessed_for(bundle: DataBundle, backbones=("resnet18", "mobilenet_v2")
                 ) -> list[Assessed]:
    unit = "patient" if bundle.split_unit == "patient" else "image"
    out = []
    for i, name in enumerate(backbones):
        ev = evaluation(bundle, i)
        samples = resample(ev.patients, ev.target, 50, 0, unit)
        cand = Candidate(name, fake_run(f"run{i}"), 0.8 - 0.1 * i, 3, 1)
        out.append(assess_one(cand, ev, serve(ev, True, "youden"), samples, "val_auroc"))
    return out


def versus(item: Assessed, delta: float, p_holm: float) -> Assessed:
    """``item`` as compared with the champion: ``delta`` and its Holm-adjusted p."""
    paired = Paired(delta, (delta - 0.1, delta + 0.1), p_holm, "paired patient bootstrap", 50)
    return replace(item, versus_champion=paired, p_holm=p_holm)


def facts_for(bundle: DataBundle, **changes) -> Facts:
    fields = data_fields(bundle.summary())
    fields.update(dataset=bundle.name, fingerprint=bundle.fingerprint, metric="val_auroc",
                  weights={"random": ["mobilenet_v2", "resnet18"]}, image_sizes=["32"],
                  epochs={"resnet18": "3", "mobilenet_v2": "3"},
                  trials={"resnet18": (3, 1, 0), "mobilenet_v2": (2, 0, 1)}, folds=1,
                  on_duplicate="group",
                  bootstrap_unit="patient" if bundle.split_unit == "patient" else "image",
                  n_replicates=50, strata=2, operating_point="youden", calibrated=True,
                  test_uses=1, seed="42", split_seed="0", commit="abc123")
    fields.update(changes)
    return Facts(**fields)
