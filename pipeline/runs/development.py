"""A logged run's development data (train, val and test), rebuilt here from its logged config:
what its test is scored on, and what an external dataset must not share with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from pipeline.common.errors import DataError, PipelineError, one_line
from pipeline.data.bundle import DataBundle, load_data
from pipeline.data.duplicates import DEFAULT_BITS
from pipeline.tracking.logged import Logged, as_logged, local_config, read_logged
from pipeline.tracking.schema import Tag
from pipeline.tracking.store import Store


def run_data(logged: Logged, cfg: DictConfig, overrides: Sequence[str] = ()) -> DataBundle:
    """The data a run was trained on, rebuilt here from its logged config; DataError when its
    fingerprint differs."""
    run, bundle = logged.run, load_data(local_config(logged, cfg, overrides))
    fingerprint = run.data.tags.get(Tag.DATA_FINGERPRINT)
    if fingerprint and bundle.fingerprint != fingerprint:
        raise DataError(
            f"run {run.info.run_id} was trained on data with fingerprint {fingerprint}, but its "
            f"dataset config gives {bundle.fingerprint} here: the data on disk changed (or pass "
            "the dataset.* overrides that say where its data is)"
        )
    return bundle


def development_data(store: Store, model_run: Any, cfg: DictConfig
                     ) -> tuple[DataBundle, int | None]:
    """The development data of the run that holds a model (an ensemble's: its first member's,
    all members share it), and the near-duplicate threshold its split was guarded with."""
    members = model_run.data.tags.get(Tag.MEMBERS)
    source = members.split("+")[0] if members else model_run
    logged = read_logged(store, source)
    try:
        with as_logged(logged.run_id):
            bundle = run_data(logged, cfg)
            bits = logged.config.dataset.get("near_duplicate_bits", DEFAULT_BITS)
    except PipelineError as exc:
        root = logged.config.dataset.get("root", "?")
        raise DataError(
            f"the development data of run {logged.run_id} (dataset "
            f"{logged.config.dataset.get('name', '?')} at {root}) cannot be read here: "
            f"{one_line(exc)}; external images are checked against it so that none of them "
            "was trained or selected on: make it readable there") from exc
    return bundle, None if bits is None else int(bits)
