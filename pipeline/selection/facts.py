"""What a selection did, as facts read from the store, the data and the selection itself: the
methods paragraph, the protocol table, the limitations and the reporting checklist are written
from these and from nothing else, so no sentence claims what the data do not support."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from omegaconf import DictConfig

from pipeline.evidence.bootstrap import Resamples
from pipeline.selection.assessment import Assessed
from pipeline.selection.competition import Competition
from pipeline.tracking.schema import Role, Tag
from pipeline.tracking.search import where
from pipeline.tracking.store import Store


@dataclass
class Facts:
    dataset: str
    fingerprint: str
    classes: list[str]
    metric: str
    weights: dict[str, list[str]]  # how the backbones started (random, imagenet:<tag>, file:..)
    image_sizes: list[str]
    epochs: dict[str, str]  # backbone -> trainer.max_epochs of its row's run
    trials: dict[str, tuple[int, int, int]]  # backbone -> complete, pruned, failed
    folds: int
    split_unit: str  # patient | image
    splits_given: list[str]  # the splits the dataset gave (the rest were carved by the tool)
    patient_overlap: int
    duplicate_groups: int
    duplicates_across_splits: int
    on_duplicate: str
    splits: dict[str, int]
    patients: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    skipped: int
    bootstrap_unit: str
    n_replicates: int
    strata: int
    operating_point: str
    calibrated: bool
    test_uses: int
    seed: str
    split_seed: str
    commit: str
    ensemble: str | None = None  # the ensemble's row, when one competed
    recipe: str | None = None  # the recipe row (or the row that is a recipe)
    external: list = field(default_factory=list)  # the champion's external validation runs

    @property
    def random_weights(self) -> bool:
        return "random" in self.weights

    @property
    def carved(self) -> list[str]:
        return [s for s in ("train", "val", "test") if s not in self.splits_given]


def weights_of(store: Store, comp: Competition) -> dict[str, list[str]]:
    """What the competing trials started from: each weights description and its backbones."""
    out: dict[str, set[str]] = {}
    for backbone, _ in store.first_per_value(comp.filter(), Tag.BACKBONE):
        for weights, _ in store.first_per_value(comp.filter(backbone=backbone), Tag.WEIGHTS):
            kind = "random" if weights == "random" else weights
            out.setdefault(kind, set()).add(backbone)
    return {k: sorted(v) for k, v in sorted(out.items())}


def external_runs(store: Store, champion_run_id: str | None) -> list:
    if champion_run_id is None:
        return []
    return store.search(where(role=Role.EXTERNAL, model_run_id=champion_run_id), max_results=50)


def data_fields(data: dict) -> dict:
    """The Facts a data summary (``DataBundle.summary``) gives."""
    return {
        "classes": list(data.get("classes", {})),
        "split_unit": str(data.get("split_unit", "patient")),
        "splits_given": list(data.get("splits_given", [])),
        "patient_overlap": int(data.get("patient_overlap", 0)),
        "duplicate_groups": int(data.get("duplicate_groups", 0)),
        "duplicates_across_splits": int(data.get("duplicates_across_splits", 0)),
        "splits": dict(data.get("splits", {})), "patients": dict(data.get("patients", {})),
        "class_counts": dict(data.get("class_counts", {})), "skipped": int(data.get("skipped", 0)),
    }


def gather(store: Store, cfg: DictConfig, comp: Competition, assessed: Sequence[Assessed],
           samples: Resamples, test_uses: int, champion_run_id: str | None) -> Facts:
    champion = assessed[0]
    data, run = champion.evaluation.data, champion.candidate.reference_run
    singles = [a for a in assessed if a.candidate.kind == "backbone"]
    ensembles = [a.backbone for a in assessed if a.candidate.members]
    recipe = next((f"paper {a.candidate.recipe}, "
                   f"{a.candidate.run.data.tags.get(Tag.BACKBONE, '?')}"
                   for a in assessed if a.candidate.recipe), None)
    fields = data_fields(data)
    fields["classes"] = list(champion.evaluation.classes)
    return Facts(
        **fields, dataset=comp.dataset, fingerprint=comp.fingerprint, metric=comp.metric,
        weights=weights_of(store, comp),
        image_sizes=sorted({r.data.tags.get(Tag.IMAGE_SIZE, "?") for a in singles
                            for r in a.candidate.runs}),
        epochs={a.backbone: a.candidate.reference_run.data.params.get("trainer.max_epochs", "?")
                for a in singles},
        trials={a.backbone: (a.candidate.complete, a.candidate.pruned, a.candidate.failed)
                for a in singles},
        folds=int(run.data.params.get("objective.cv_folds", "1") or 1),
        on_duplicate=champion.evaluation.on_duplicate, bootstrap_unit=samples.unit,
        n_replicates=len(samples), strata=samples.strata,
        operating_point=str(cfg.select.operating_point),
        calibrated=champion.temperature is not None, test_uses=test_uses,
        seed=run.data.tags.get(Tag.SEED, "-"), split_seed=run.data.params.get("dataset.seed", "-"),
        commit=store.commit, ensemble=ensembles[0] if ensembles else None, recipe=recipe,
        external=external_runs(store, champion_run_id),
    )
