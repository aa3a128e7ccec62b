"""External validation: a logged model on every image of another dataset (no split), scored with
the same metrics as its test, at its stored operating point, and logged as a ``role=external``
run linked to the model's run. ``evaluate.label_map`` maps the dataset's classes onto the model's
(Kermany's normal and pneumonia both onto non_covid, say)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.common.cli import Say
from pipeline.common.errors import DataError
from pipeline.data.bundle import DataBundle, load_data
from pipeline.evidence.bootstrap import bootstrap, patient_groups, resamples
from pipeline.evidence.metrics import METRICS, scores
from pipeline.tracking.models import LoadedModel
from pipeline.tracking.runs import close_dead_runs
from pipeline.tracking.schema import Role, Tag
from pipeline.tracking.store import Store
from pipeline.training.reports import write_reports


@dataclass
class External:
    run_id: str
    model_run_id: str
    dataset: str
    n_images: int
    metrics: dict[str, float | None]
    intervals: dict[str, list[float | None]]


def class_map(dataset_classes: list[str], model_classes: list[str],
              label_map: Mapping[str, str]) -> np.ndarray:
    """For each dataset class, the index of the model class it counts as; one clear error when a
    class is neither the model's nor mapped."""
    unknown = [c for c in label_map.values() if c not in model_classes]
    if unknown:
        raise DataError(f"evaluate.label_map maps onto {unknown}, which the model does not "
                        f"predict (its classes: {model_classes})")
    out = []
    for name in dataset_classes:
        target = label_map.get(name, name if name in model_classes else None)
        if target is None:
            raise DataError(
                f"the dataset's class '{name}' is not one of the model's classes "
                f"{model_classes} and evaluate.label_map does not map it (the dataset's classes: "
                f"{dataset_classes}): pass evaluate.label_map='{{{name}: <one of "
                f"{', '.join(model_classes)}>}}'")
        out.append(model_classes.index(target))
    return np.asarray(out, dtype=np.int64)


def _label_map(cfg: DictConfig) -> dict[str, str]:
    raw = cfg.evaluate.get("label_map")
    if raw is None:
        return {}
    if not OmegaConf.is_dict(raw):
        raise DataError(f"evaluate.label_map={raw!r} must map dataset classes to model classes, "
                        "e.g. evaluate.label_map='{pneumonia: non_covid}'")
    return {str(k): str(v) for k, v in raw.items()}


def whole_dataset(cfg: DictConfig, image_size: int) -> DataBundle:
    """Every image of the configured dataset at the model's size: no val or test carved out."""
    local = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    local.dataset.image_size = int(image_size)
    local.dataset.val_fraction = 0.0
    local.dataset.test_fraction = 0.0
    return load_data(local)


def evaluate_external(cfg: DictConfig, store: Store, model: LoadedModel,
                      model_run: Any, threshold: float | None, say: Say = print) -> External:
    """Score ``model`` on the whole configured dataset and log it beside the model's run, in
    ``store``; see the module docstring."""
    store = store.at(model_run.info.experiment_id)
    close_dead_runs(store)
    bundle = whole_dataset(cfg, model.image_size)
    mapping = class_map(list(bundle.classes), list(model.classes),
                        _label_map(cfg))
    images = torch.from_numpy(np.asarray(bundle.images, dtype=np.uint8))
    probs = model.predict(images).numpy()
    target = mapping[bundle.labels]
    positive = (model.classes.index(model.positive_class) if model.positive_class in
                model.classes else None)
    present = sorted({model.classes[i] for i in np.unique(target)})
    samples = resamples(patient_groups(bundle.patients.tolist()), int(cfg.select.bootstrap),
                        int(cfg.seed))
    result = bootstrap(probs, target, samples, lambda p, t: scores(p, t, positive, threshold))
    metrics: dict[str, float | None] = {}
    intervals: dict[str, list[float | None]] = {}
    for name in METRICS:
        value = result.values.get(name)
        ok = value is not None and math.isfinite(value)
        metrics[name] = float(value) if ok else None
        intervals[name] = [None if not math.isfinite(v) else float(v)
                           for v in result.intervals.get(name, (math.nan, math.nan))]
    if len(present) < len(model.classes):
        missing = [m for m in METRICS if metrics[m] is None]
        say(f"only {', '.join(present)} of the model's classes {model.classes} is in the data: "
            f"{', '.join(missing) or 'nothing'} cannot be computed (AUROC needs both classes)")
        for name in missing:
            intervals[name] = [None, None]
    run_id = _log(store, model_run, bundle, probs, target, model, metrics, intervals, threshold)
    return External(run_id, model_run.info.run_id, bundle.name, len(target), metrics, intervals)


def _log(store: Store, model_run: Any, bundle: DataBundle, probs: np.ndarray,
         target: np.ndarray, model: LoadedModel, metrics: Mapping[str, float | None],
         intervals: Mapping[str, list[float | None]], threshold: float | None) -> str:
    model_run_id = model_run.info.run_id
    with store.open_run(
        Role.EXTERNAL, model_run_id, f"external-{bundle.name}", dataset=bundle.name,
        data_fingerprint=bundle.fingerprint, model_run_id=model_run_id,
        backbone=model_run.data.tags.get(Tag.BACKBONE, ""), model_uri=model.uri,
        threshold="" if threshold is None else repr(threshold),
    ) as run:
        values = {f"external_{k}": v for k, v in metrics.items() if v is not None}
        for name, (low, high) in intervals.items():
            if low is not None and high is not None:
                values.update({f"external_{name}_ci_low": low, f"external_{name}_ci_high": high})
        values["n_images"] = float(len(target))
        store.log(run.id, metrics=values)
        store.log_dataset(run.id, bundle, context="evaluation")
        with tempfile.TemporaryDirectory() as tmp:
            positive = (model.classes.index(model.positive_class)
                        if model.positive_class in model.classes else None)
            write_reports(Path(tmp), probs, target, list(model.classes), positive, "external_")
            store.log_artifacts(run.id, tmp)
    return run.id
