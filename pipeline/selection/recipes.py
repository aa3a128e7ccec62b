"""The papers' recipes (baseline trials) against the search: the best recipe trial is tested
beside the champion, and the search gain is reported on test (paired, with its interval and
p-value) as well as on validation, where it is optimistic: the same validation scores chose the
searched trial."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.selection.competition import Candidate, Competition
from pipeline.selection.statistics import Paired
from pipeline.tracking.schema import Tag
from pipeline.tracking.search import best_of, order_by, where
from pipeline.tracking.store import Store


@dataclass
class Recipes:
    """The best searched trial and the best recipe trial, on validation."""

    searched: Any
    baseline: Any
    metric: str
    test: Paired | None = None  # searched minus recipe, on test

    @property
    def value(self) -> float:
        """The validation gain, signed so that positive means the search did better."""
        key = best_of(self.metric)
        diff = self.searched.data.metrics[key] - self.baseline.data.metrics[key]
        return diff if "loss" not in self.metric else -diff

    def describe(self) -> str:
        tags = self.baseline.data.tags
        return (f"best searched run {self.searched.info.run_id}, best recipe: paper "
                f"{tags[Tag.BASELINE]}, {tags[Tag.BACKBONE]}, run {self.baseline.info.run_id}")

    def validation_sentence(self) -> str:
        return (f"search gain over the papers' recipes on validation (optimistic: the same "
                f"validation scores chose the searched run): {self.value:+.3f} {self.metric} "
                f"({self.describe()})")

    def test_sentence(self) -> str | None:
        if self.test is None:
            return None
        t = self.test
        return (f"search gain over the papers' recipes on test: {t.delta_auroc:+.3f} "
                f"[{t.delta_ci[0]:+.3f}, {t.delta_ci[1]:+.3f}], p = {t.p_value:.2f} (AUROC, "
                f"{t.test}; {self.describe()})")

    def as_json(self) -> dict | None:
        if self.test is None:
            return None
        return {"delta_auroc": self.test.delta_auroc, "ci": list(self.test.delta_ci),
                "p_value": self.test.p_value, "test": self.test.test,
                "searched_run_id": self.searched.info.run_id,
                "recipe_run_id": self.baseline.info.run_id,
                "recipe": self.baseline.data.tags.get(Tag.BASELINE)}


def recipes(store: Store, comp: Competition, baselines: int = 50) -> Recipes | None:
    """The best competing run that is no baseline, and the best baseline; None without both."""
    order = order_by(comp.metric, comp.direction)
    baseline = store.first(where(comp.filter(), f"tags.{Tag.BASELINE} LIKE '%'"), order)
    if baseline is None:
        return None
    ahead = store.search(comp.filter(), order, max_results=baselines + 1)
    searched = next((r for r in ahead if Tag.BASELINE not in r.data.tags), None)
    return Recipes(searched, baseline, comp.metric) if searched is not None else None


def recipe_row(store: Store, comp: Competition, rec: Recipes,
               ranked: list[Candidate]) -> Candidate | None:
    """A row for the best recipe trial, unless it already is a backbone's row."""
    run = rec.baseline
    if any(c.run is not None and c.run.info.run_id == run.info.run_id for c in ranked):
        return None
    tags = run.data.tags
    return Candidate(backbone=f"recipe of paper {tags[Tag.BASELINE]} ({tags[Tag.BACKBONE]})",
                     run=run, value=float(run.data.metrics[best_of(comp.metric)]), complete=1,
                     pruned=0, kind="recipe")
