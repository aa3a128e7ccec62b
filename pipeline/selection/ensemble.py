"""``select.ensemble=k``: the mean probability of the k best competing trials across every
backbone, chosen on validation, as one more row of the comparison. It competes on its validation
score like any backbone, defined as a backbone's is (the mean over folds of each fold's
validation metric; one fold without cross-validation), and when it wins it is registered as the
champion: its members' weights and a manifest (no pickle), served by ``pipeline.predict`` like any
champion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from omegaconf import DictConfig

from pipeline.common.cli import Say
from pipeline.evidence.metrics import score_named
from pipeline.selection.competition import Candidate, Competition
from pipeline.selection.evaluation import Evaluation, evaluate_run
from pipeline.tracking.ensemble_model import log_ensemble
from pipeline.tracking.models import model_uri
from pipeline.tracking.schema import Role
from pipeline.tracking.search import order_by
from pipeline.tracking.store import Store


def top_runs(store: Store, comp: Competition, k: int) -> list:
    """The k best competing trial runs on validation, whatever their backbone."""
    return store.search(comp.filter(), order_by(comp.metric, comp.direction), max_results=k)


def validation_score(ev: Evaluation, metric: str) -> float:
    """``metric`` (a ``val_*`` name) of an evaluation's validation predictions as a backbone's
    ``best_val_*`` is defined: each fold's value on its own validation images, averaged over
    the folds (a run without cross-validation has one fold)."""
    folds = ev.val_folds if ev.val_folds is not None else np.zeros(len(ev.val_target), int)
    probs = ev.val_probs
    return float(np.mean([score_named(metric, probs[folds == f], ev.val_target[folds == f],
                                      ev.positive_index) for f in np.unique(folds)]))


def ensemble_of(store: Store, comp: Competition, cfg: DictConfig,
                evaluations: dict[str, Evaluation], overrides: Sequence[str],
                say: Say) -> tuple[Candidate, Evaluation] | None:
    """The ensemble's row and its evaluation (None, with a line, when it cannot be formed)."""
    k = int(cfg.select.get("ensemble", 0) or 0)
    if k < 2:
        return None
    members = top_runs(store, comp, k)
    if len(members) < 2:
        say(f"select.ensemble={k}: only {len(members)} competing trial(s), no ensemble")
        return None
    known = {ev.run_id: ev for ev in evaluations.values()}
    evs = [known.get(r.info.run_id) or evaluate_run(store, r, cfg, overrides)
           for r in members]
    first = evs[0]
    if any(ev.files != first.files or ev.val_files != first.val_files
           or not np.array_equal(ev.val_folds, first.val_folds) for ev in evs):
        say(f"select.ensemble={k}: the members were validated on different images or folds "
            "(cross-validated and single-split trials mixed), so their validation cannot be "
            "averaged; no ensemble")
        return None
    # Its networks are its members, each the mean of its own folds: what the registered
    # ensemble serves (LoadedModel.network_probabilities of an ensemble).
    ev = replace(first, run_id="+".join(r.info.run_id for r in members),
                 networks=np.stack([e.probs for e in evs]),
                 val_networks=np.stack([e.val_probs for e in evs]), model=None)
    name = f"ensemble of the top {len(members)}"
    cand = Candidate(backbone=name, run=None, value=validation_score(ev, comp.metric),
                     complete=len(members), pruned=0, members=members,
                     kind="ensemble")
    return cand, ev


def insert_ranked(ranked: list[Candidate], cand: Candidate, direction: str) -> list[Candidate]:
    """``ranked`` with the ensemble at its place by validation value (after equal ones)."""
    better = (lambda a, b: a > b) if direction == "maximize" else (lambda a, b: a < b)
    place = next((i for i, c in enumerate(ranked) if better(cand.value, c.value)), len(ranked))
    return [*ranked[:place], cand, *ranked[place:]]


def register_run(store: Store, comp: Competition, cand: Candidate, ev: Evaluation) -> Any:
    """A run (``role=ensemble``) holding the ensemble's model; the run, read back."""
    with store.open_run(Role.ENSEMBLE, name=cand.backbone, backbone=cand.backbone,
                        dataset=comp.dataset, data_fingerprint=comp.fingerprint,
                        members=cand.run_id) as run:
        store.log(run.id, metrics={f"ensemble_{comp.metric}": cand.value})
        positive = ev.classes[ev.positive_index] if ev.positive_index is not None else None
        log_ensemble(run.id, [model_uri(m) for m in cand.members], ev.classes,
                     int(ev.pixels.shape[-1]) if ev.pixels is not None else 224, positive,
                     store)
    return store.get_run(run.id)
