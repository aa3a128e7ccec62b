"""External validation: a logged model on every image of another dataset (no split), served as it
is (calibrated, at its stored operating point), scored by the same metrics engine as its test
with patient-bootstrap intervals, and logged as a ``role=external`` run linked to the model's
run. ``evaluate.label_map`` maps the dataset's classes onto the model's (Kermany's normal and
pneumonia both onto non_covid, say).

An external image that is also in the model's development data (train, val or test: the same
radiograph re-encoded or resized, found by the near-duplicate hash that guards the splits) would
score the model on what it was trained or selected on: such images are left out and counted."""

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
from pipeline.data.duplicates import shared_with
from pipeline.evidence.bootstrap import bootstrap, resample
from pipeline.evidence.metrics import METRICS
from pipeline.inference.prediction import Served
from pipeline.runs.development import development_data
from pipeline.tracking.runs import close_dead_runs
from pipeline.tracking.schema import Role, Tag
from pipeline.tracking.store import Store
from pipeline.training.reports import write_reports


@dataclass
class External:
    run_id: str
    model_run_id: str
    dataset: str
    n_images: int  # scored
    metrics: dict[str, float | None]
    intervals: dict[str, list[float | None]]
    n_overlap: int = 0  # left out: also in the development data
    n_replicates: int = 0


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


def overlap(cfg: DictConfig, store: Store, model_run: Any, bundle: DataBundle) -> np.ndarray:
    """(N,) bool: the external images that are also in the model's development data."""
    development, bits = development_data(store, model_run, cfg)
    if development.image_size != bundle.image_size:
        raise DataError(f"the development data is at {development.image_size} px but the model "
                        f"takes {bundle.image_size} px: they cannot be compared")
    return shared_with(np.asarray(bundle.images), np.asarray(development.images),
                       development.images_path, bits)


def evaluate_external(cfg: DictConfig, store: Store, served: Served, model_run: Any,
                      say: Say = print) -> External:
    """Score the served model on the whole configured dataset (less what it shares with the
    development data) and log it beside the model's run, in ``store``."""
    store = store.at(model_run.info.experiment_id)
    close_dead_runs(store)
    model = served.model
    bundle = whole_dataset(cfg, model.image_size)
    mapping = class_map(list(bundle.classes), list(model.classes), _label_map(cfg))
    shared = overlap(cfg, store, model_run, bundle)
    n_total, n_overlap = len(shared), int(shared.sum())
    say(f"{n_overlap:,} of {n_total:,} images are also in the development data and were left "
        "out", flush=True)
    keep = np.flatnonzero(~shared)
    if not len(keep):
        raise DataError(f"every image of {bundle.name} is also in the model's development data: "
                        "there is nothing external to validate on")
    images = torch.from_numpy(np.asarray(bundle.images[keep], dtype=np.uint8))
    probs = served.probabilities(images)
    target = mapping[bundle.labels[keep]]
    present = sorted({model.classes[i] for i in np.unique(target)})
    unit = "patient" if bundle.split_unit == "patient" else "image"
    samples = resample(bundle.patients[keep].tolist(), target, int(cfg.select.bootstrap),
                       int(cfg.seed), unit)
    result = bootstrap(probs, target, served.positive, served.calibration.threshold, samples)
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
    out = External("", model_run.info.run_id, bundle.name, len(target), metrics, intervals,
                   n_overlap, len(samples))
    out.run_id = _log(store, model_run, bundle, probs, target, served, out)
    return out


def _log(store: Store, model_run: Any, bundle: DataBundle, probs: np.ndarray,
         target: np.ndarray, served: Served, result: External) -> str:
    model_run_id, model, cal = model_run.info.run_id, served.model, served.calibration
    with store.open_run(
        Role.EXTERNAL, model_run_id, f"external-{bundle.name}", dataset=bundle.name,
        data_fingerprint=bundle.fingerprint, model_run_id=model_run_id,
        backbone=model_run.data.tags.get(Tag.BACKBONE, ""), model_uri=model.uri,
        threshold="" if cal.threshold is None else repr(cal.threshold),
        temperature="" if cal.temperature is None else repr(cal.temperature),
    ) as run:
        values = {f"external_{k}": v for k, v in result.metrics.items() if v is not None}
        for name, (low, high) in result.intervals.items():
            if low is not None and high is not None:
                values.update({f"external_{name}_ci_low": low, f"external_{name}_ci_high": high})
        values.update({"n_images": float(len(target)), "n_overlap": float(result.n_overlap),
                       "n_replicates": float(result.n_replicates)})
        store.log(run.id, metrics=values)
        store.log_dataset(run.id, bundle, context="evaluation")
        with tempfile.TemporaryDirectory() as tmp:
            write_reports(Path(tmp), probs, target, list(model.classes), served.positive,
                          "external_", served.labels(probs))
            store.log_artifacts(run.id, tmp)
    return run.id
