"""Which runs compete, and the best of each backbone, found by the store's own search.

Competing runs are sweep trials (``role=trial``) that finished COMPLETE on one dataset and split
(one ``data_fingerprint``): never re-runs, single trainings or selection runs. They are ranked by
the best epoch's ``select.metric`` on the validation split (``best_val_auroc``, logged apart from
the per-epoch values), ties to the lower ``best_val_loss``; the test split is not
looked at here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from pipeline.common.errors import PipelineError
from pipeline.tracking.schema import FINISHED, Role, State, Tag
from pipeline.tracking.search import best_of, order_by, where
from pipeline.tracking.store import Store


@dataclass
class Competition:
    """The runs that compete: an experiment, one data fingerprint, a metric and its direction."""

    experiment_id: str
    fingerprint: str
    dataset: str
    metric: str
    direction: str

    def filter(self, state: State = State.COMPLETE, **tags: str) -> str:
        """Trial runs of this data in ``state`` (COMPLETE ones must also have FINISHED)."""
        return where(FINISHED if state == State.COMPLETE else "", role=Role.TRIAL, state=state,
                     data_fingerprint=self.fingerprint, dataset=self.dataset, **tags)


@dataclass
class Candidate:
    """A backbone's best competing run (or, with ``members``, an ensemble of runs)."""

    backbone: str
    run: Any  # None for an ensemble
    value: float
    complete: int
    pruned: int
    members: list = field(default_factory=list)  # an ensemble's runs, best first
    failed: int = 0
    kind: str = "backbone"  # backbone (its best run) | ensemble | recipe (the best recipe run)

    @property
    def key(self) -> str:
        """The row's name where MLflow names things (metric prefixes, artifact folders)."""
        if self.kind == "recipe":
            return f"recipe_{self.recipe}_{self.run.data.tags.get(Tag.BACKBONE, '')}"
        return self.backbone

    @property
    def recipe(self) -> str | None:
        """The paper whose published recipe this run trained (None: a searched trial)."""
        return self.run.data.tags.get(Tag.BASELINE) if self.run is not None else None

    @property
    def run_id(self) -> str:
        if self.run is None:
            return "+".join(m.info.run_id for m in self.members)
        return self.run.info.run_id

    @property
    def reference_run(self) -> Any:
        """The run whose config stands for the row (an ensemble's best member)."""
        return self.run if self.run is not None else self.members[0]

    @property
    def runs(self) -> list:
        return [self.run] if self.run is not None else list(self.members)


def competition(store: Store, cfg: DictConfig, configured_fingerprint: Callable[[], str]
                ) -> Competition:
    """The competing data, in the store's experiment ``tracking.experiment`` (which selection
    never creates): ``select.fingerprint``; else the only fingerprint among the complete trials
    of ``select.dataset`` (null: the configured dataset); with several, the configured data's
    when it is one of them; otherwise an error that lists them."""
    exp = store.experiment_id
    if exp is None:
        raise PipelineError(
            f"no runs to compare: the MLflow store at {store.uri} has no experiment "
            f"'{cfg.tracking.experiment}' (run a sweep first: make sweep, or set "
            "tracking.experiment)"
        )
    dataset = str(cfg.select.dataset or cfg.dataset.name)
    metric, direction = str(cfg.select.metric), str(cfg.select.direction)
    chosen = cfg.select.get("fingerprint")
    if chosen:
        return Competition(exp, str(chosen), dataset, metric, direction)
    probe = Competition(exp, None, dataset, metric, direction)  # type: ignore[arg-type]
    found = store.first_per_value(probe.filter(), Tag.DATA_FINGERPRINT)
    if not found:
        raise PipelineError(_no_runs_message(store, cfg, dataset))
    fingerprints = [fp for fp, _ in found]
    if len(found) == 1:
        return Competition(exp, fingerprints[0], dataset, metric, direction)
    reason = ""
    if dataset == str(cfg.dataset.name):
        try:
            mine = configured_fingerprint()
        except PipelineError as exc:
            mine, reason = None, f" (the configured data cannot be read: {exc})"
        if mine in fingerprints:
            return Competition(exp, mine, dataset, metric, direction)
        if mine:
            reason = f" (the configured data's fingerprint {mine} is none of them)"
    listing = "; ".join(
        f"{fp} (e.g. run {run.info.run_id}, image_size {run.data.tags.get(Tag.IMAGE_SIZE, '?')})"
        for fp, run in found
    )
    raise PipelineError(
        f"complete trial runs of dataset {dataset} come from {len(found)} different data "
        f"fingerprints{reason}: {listing}; choose one with select.fingerprint=<fingerprint>"
    )


def _no_runs_message(store: Store, cfg: DictConfig, dataset: str) -> str:
    text = (
        f"no runs to compare: no FINISHED, COMPLETE trial runs (role=trial) of dataset {dataset} "
        f"in experiment '{cfg.tracking.experiment}' at {store.uri}"
    )
    others = store.first_per_value(where(FINISHED, role=Role.TRIAL, state=State.COMPLETE),
                                   Tag.DATASET)
    if others:
        names = ", ".join(name for name, _ in others)
        return f"{text}; complete trials exist for dataset(s) {names}: pass select.dataset=<name>"
    return f"{text} (run a sweep first: make sweep)"


def candidates(store: Store, comp: Competition) -> list[Candidate]:
    """Each backbone's best run, best backbone first; trials counted per backbone."""
    order = order_by(comp.metric, comp.direction)
    found = store.first_per_value(comp.filter(), Tag.BACKBONE, order)
    out: list[Candidate] = []
    for backbone, run in found:
        value = run.data.metrics.get(best_of(comp.metric))
        if value is None or not math.isfinite(value):
            continue  # its best has no finite value: no run of this backbone has one
        out.append(Candidate(
            backbone=backbone, run=run, value=float(value),
            complete=store.count(comp.filter(backbone=backbone)),
            pruned=store.count(comp.filter(State.PRUNED, backbone=backbone)),
            failed=store.count(comp.filter(State.FAIL, backbone=backbone)),
        ))
    if not out:
        logged = sorted(found[0][1].data.metrics) if found else []
        raise PipelineError(
            f"no complete trial of data {comp.fingerprint} has a finite {best_of(comp.metric)}: "
            f"check "
            f"select.metric (these runs log {', '.join(logged[:12]) or 'no metrics'})"
        )
    return out
