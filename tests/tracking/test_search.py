"""The selection's search on big stores (5,000 runs in the slow suite): right answers, without
listing every run."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.common.errors import ConfigError, PipelineError
from pipeline.config import compose
from pipeline.selection.competition import candidates, competition
from pipeline.tracking.schema import Role, State, Tag
from pipeline.tracking.search import order_by, quote, where
from pipeline.tracking.store import open_store
from tests.sweep_store import RunSpec, trial_tags, write_runs

FP = "feedfacecafebeef"
BACKBONES = ("resnet18", "densenet121", "vgg16", "xception")
WINS = {"best_val_auroc": 0.999, "best_val_loss": 0.001}  # every decoy scores this: it would win


class CountingClient:
    """An MlflowClient that records what each search_runs asked for and got."""

    def __init__(self, client: MlflowClient):
        self._client = client
        self.searches: list[tuple[int, int]] = []  # (max_results, runs returned)

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def search_runs(self, *args, **kwargs):
        page = self._client.search_runs(*args, **kwargs)
        self.searches.append((kwargs.get("max_results", 1000), len(page)))
        return page


def big_store_specs(other_exp: str, n_total: int = 5000) -> list[RunSpec]:
    """Competing trials (4 backbones; ties on val_auroc broken by val_loss), their pruned and
    failed siblings, and decoys of every kind that would win if they competed."""
    rng = np.random.default_rng(0)
    same = {Tag.DATASET: "synthetic", Tag.DATA_FINGERPRINT: FP, Tag.IMAGE_SIZE: "32",
            Tag.SEED: "42"}
    specs = []
    for b, backbone in enumerate(BACKBONES):
        for n in range(40):
            auroc = float(np.round(rng.uniform(0.5, 0.9), 2))  # rounded: ties happen
            # The last epoch's val_auroc (1.0 here) is not the best epoch's: ranking on it, the
            # latest value logged, would pick any of these.
            specs.append(RunSpec({**same, **trial_tags(backbone, n)},
                                 {"best_val_auroc": auroc, "val_auroc": 1.0,
                                  "best_val_loss": float(rng.uniform(0.2, 1))}))
        for n, loss in enumerate((0.30, 0.20, 0.25)):  # a three-way tie at the top
            specs.append(RunSpec({**same, **trial_tags(backbone, 50 + n)},
                                 {"best_val_auroc": 0.95 - b / 100, "best_val_loss": loss}))
        specs += [RunSpec({**same, **trial_tags(backbone, 60 + n, State.PRUNED)}, WINS)
                  for n in range(10 + b)]
        specs += [RunSpec({**same, **trial_tags(backbone, 80 + n, State.FAIL)},
                          WINS, "FAILED") for n in range(3)]
    decoys = [
        {Tag.ROLE: Role.RERUN, Tag.STATE: State.COMPLETE},
        {Tag.ROLE: Role.TRAIN, Tag.STATE: State.COMPLETE},
        {Tag.ROLE: Role.SELECTION},
        {Tag.ROLE: Role.STUDY},
        {**trial_tags("resnet18", 0), Tag.DATA_FINGERPRINT: "0000000000000000"},
        {**trial_tags("resnet18", 0), Tag.DATASET: "covid",
         Tag.DATA_FINGERPRINT: "1111111111111111"},
        {**trial_tags("resnet18", 0), "status_is": "RUNNING"},  # a trial still running
        {**trial_tags("resnet18", 0), "other_experiment": "1"},
    ]
    i = 0
    while len(specs) < n_total:
        extra = dict(decoys[i % len(decoys)])
        status = "RUNNING" if extra.pop("status_is", None) else "FINISHED"
        exp = other_exp if extra.pop("other_experiment", None) else None
        backbone = BACKBONES[(i // len(decoys)) % len(BACKBONES)]  # every decoy, every backbone
        specs.append(RunSpec({**same, **extra, Tag.BACKBONE: backbone}, WINS, status, exp))
        i += 1
    return specs


def expected_best(specs: list[RunSpec], exp: str) -> dict[str, tuple[str, float]]:
    """Per backbone (run id, val_auroc) of the best competing run, by brute force."""
    best: dict[str, RunSpec] = {}
    for spec in specs:
        t = spec.tags
        if (spec.experiment_id or exp) != exp or spec.status != "FINISHED" or t.get(
                "role") != "trial" or t.get("state") != "COMPLETE" or t.get(
                "data_fingerprint") != FP or t.get("dataset") != "synthetic":
            continue
        key = (spec.metrics["best_val_auroc"], -spec.metrics["best_val_loss"])
        old = best.get(t["backbone"])
        if old is None or key > (old.metrics["best_val_auroc"], -old.metrics["best_val_loss"]):
            best[t["backbone"]] = spec
    return {b: (s.run_id, s.metrics["best_val_auroc"]) for b, s in best.items()}


@pytest.mark.parametrize("n_total", [300, pytest.param(5000, marks=pytest.mark.slow)])
def test_a_big_store_is_searched_without_listing_every_run(tmp_path, n_total):
    cfg = compose([f"state_dir={tmp_path}"])
    store = open_store(cfg)
    client, exp = store.client, store.experiment_id
    other = client.create_experiment("elsewhere")
    specs = big_store_specs(other, n_total)
    started = time.perf_counter()
    write_runs(store, specs)
    built = time.perf_counter() - started
    assert len(specs) == n_total
    sample = client.get_run(specs[0].run_id)  # the rows read back as ordinary runs
    assert sample.data.tags["backbone"] == "resnet18" and "val_auroc" in sample.data.metrics

    counting = CountingClient(client)
    searching = replace(store, client=counting)
    started = time.perf_counter()
    comp = competition(searching, cfg, configured_fingerprint=lambda: FP)
    ranked = candidates(searching, comp)
    took = time.perf_counter() - started
    print(f"store of {len(specs)} runs written in {built:.1f} s; "
          f"selection search {took:.2f} s in {len(counting.searches)} searches")

    truth = expected_best(specs, exp)
    assert {c.backbone: (c.run_id, c.value) for c in ranked} == truth
    assert [c.backbone for c in ranked] == sorted(truth, key=lambda b: -truth[b][1])
    for cand in ranked:
        assert cand.run.data.metrics["best_val_loss"] == 0.20  # the tie: the lower val_loss won
        assert (cand.complete, cand.pruned) == (43, 10 + BACKBONES.index(cand.backbone))
    returned = sum(n for _, n in counting.searches)
    competing = sum(c.complete + c.pruned for c in ranked)
    assert returned <= competing + len(counting.searches)  # only what is counted comes back
    if n_total >= 5000:
        assert returned < len(specs) / 10


def test_with_several_fingerprints_the_configured_data_decides(tmp_path):
    cfg = compose([f"state_dir={tmp_path}"])
    store = open_store(cfg)
    specs = [RunSpec({Tag.DATASET: "synthetic", Tag.DATA_FINGERPRINT: fp,
                      Tag.BACKBONE: "resnet18", **trial_tags("resnet18", n)},
                     {"best_val_auroc": 0.5, "best_val_loss": 1.0})
             for n, fp in enumerate((FP, "0000000000000000"))]
    write_runs(store, specs)
    assert competition(store, cfg, lambda: FP).fingerprint == FP
    with pytest.raises(PipelineError, match=r"2 different data fingerprints") as err:
        competition(store, cfg, lambda: "ffffffffffffffff")
    assert FP in str(err.value) and "0000000000000000" in str(err.value)
    assert "select.fingerprint=" in str(err.value)
    chosen = compose([f"state_dir={tmp_path}", "select.fingerprint=0000000000000000"])
    assert competition(store, chosen, lambda: pytest.fail("not needed")).fingerprint == (
        "0000000000000000")


def test_filter_strings_quote_values_and_order_best_first():
    assert where("attributes.status = 'FINISHED'", role="trial", dataset=None) == (
        "attributes.status = 'FINISHED' AND tags.role = 'trial'")
    with pytest.raises(ValueError, match="is not a valid Tag"):  # a tag key the protocol lacks
        where(rolle="trial")
    assert quote("it's") == '"it\'s"'
    with pytest.raises(ConfigError):
        quote("both ' and \"")
    assert order_by("val_auroc", "maximize")[:2] == ["metrics.`best_val_auroc` DESC",
                                                      "metrics.best_val_loss ASC"]
    assert order_by("val_loss", "minimize")[:2] == ["metrics.`best_val_loss` ASC",
                                                     "attributes.start_time ASC"]
    with pytest.raises(ConfigError, match="maximize or minimize"):  # the schema's select.direction
        compose(["select.direction=up"])
