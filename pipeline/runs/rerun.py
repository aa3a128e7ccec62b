"""Re-run a logged run from what it logged: its config, checked against the data on disk, trained
again as a new run (``role=rerun``, ``rerun_of=<id>``), its metrics set beside the original's."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig

from pipeline.common.cli import Say
from pipeline.common.errors import DataError
from pipeline.data.bundle import DataBundle
from pipeline.runs.context import Context
from pipeline.runs.recording import SPLIT_MANIFEST
from pipeline.runs.training_run import TrainResult, run_training
from pipeline.tracking.logged import Logged, as_logged, local_config, read_logged
from pipeline.tracking.schema import Role, Tag
from pipeline.tracking.store import Store


@dataclass
class Rerun:
    run_id: str
    rerun_of: str
    result: TrainResult
    rows: list[tuple[str, float | None, float | None, float | None]]  # metric, orig, new, diff
    max_abs_diff: float | None  # over the metrics both logged; None: NaN on one side only


def rerun_config(store: Store, logged: Logged, cfg: DictConfig,
                 overrides: Sequence[str] = ()) -> DictConfig:
    """The run's logged config, in this store, next to the original, with the overrides."""
    mine = [o for o in overrides if not o.lstrip("+~").startswith(("rerun.", "select."))]
    run_cfg = local_config(logged, cfg, mine)
    run_cfg.tracking.experiment = store.experiment_name(logged.run.info.experiment_id)
    return run_cfg


def data_differences(logged: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """What changed between two split manifests (file, label, patient, split), in words."""
    old, new = logged.set_index("file"), current.set_index("file")
    diffs = []
    added, removed = new.index.difference(old.index), old.index.difference(new.index)
    if len(added):
        diffs.append(f"{len(added)} image(s) added (e.g. {added[0]})")
    if len(removed):
        diffs.append(f"{len(removed)} image(s) gone (e.g. {removed[0]})")
    common = old.index.intersection(new.index)
    for column, what in (("label", "relabelled"), ("split", "moved to another split"),
                         ("patient", "given another patient")):
        if column in old and column in new:
            changed = common[(old.loc[common, column].astype(str)
                              != new.loc[common, column].astype(str)).to_numpy()]
            if len(changed):
                diffs.append(f"{len(changed)} image(s) {what} (e.g. {changed[0]})")
    return diffs or ["same files, labels, patients and split, but different image contents"]


def check_data(store: Store, run: Any, run_cfg: DictConfig, bundle: DataBundle,
               allow_change: bool) -> bool:
    """True when the data on disk is the run's; a DataError that says what differs otherwise
    (unless ``allow_change``: then False)."""
    logged = run.data.tags.get(Tag.DATA_FINGERPRINT)
    if not logged or logged == bundle.fingerprint:
        return True
    if allow_change:
        return False
    try:
        diffs = store.read_artifact(run.info.run_id, SPLIT_MANIFEST, lambda path: data_differences(
            pd.read_csv(path, dtype=str), bundle.manifest().astype(str)))
    except Exception:  # noqa: BLE001 -- no manifest logged: the fingerprints still differ
        diffs = ["its split manifest is not there to compare"]
    size = run.data.tags.get(Tag.IMAGE_SIZE)
    if size and size != str(run_cfg.dataset.image_size):
        diffs.insert(0, f"image_size {size} logged, {run_cfg.dataset.image_size} now")
    raise DataError(
        f"the data differs from run {run.info.run_id}'s (fingerprint {logged} logged, "
        f"{bundle.fingerprint} on disk): {'; '.join(diffs)}; pass rerun.allow_data_change=true "
        "to re-run on this data anyway"
    )


def compare_metrics(original: Mapping[str, float], new: Mapping[str, float]):
    """Rows (metric, original, re-run, |diff|) over every metric either run logged, and the
    largest difference over the metrics both logged (None when one is NaN and the other not).
    A metric of one run only (a sweep's ``objective``) is listed, not compared."""
    rows, worst = [], 0.0
    for key in sorted(set(original) | set(new)):
        a, b = original.get(key), new.get(key)
        diff = _abs_diff(a, b)
        rows.append((key, a, b, diff))
        if a is not None and b is not None:
            worst = None if diff is None or worst is None else max(worst, diff)
    return rows, worst


def _abs_diff(a: float | None, b: float | None) -> float | None:
    """|a - b|; 0 for equal values (NaN and infinities included); None when not comparable."""
    if a is None or b is None:
        return None
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    diff = abs(a - b)
    return None if math.isnan(diff) else diff


def format_rows(rows: Sequence[tuple[str, float | None, float | None, float | None]]) -> str:
    width = max([len("metric"), *(len(r[0]) for r in rows)])
    lines = [f"{'metric':<{width}}  {'original':>18}  {'re-run':>18}  {'diff':>10}"]
    for key, a, b, diff in rows:
        lines.append(f"{key:<{width}}  {_fmt(a):>18}  {_fmt(b):>18}  {_fmt(diff, 3):>10}")
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 12) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


@contextmanager
def torch_threads(logged: str | None) -> Iterator[None]:
    """CPU float sums depend on the intra-op thread count: use the original's when it logged one
    (tag ``torch_threads``), so a CPU re-run repeats it to the last digit."""
    threads = torch.get_num_threads()
    if logged and logged.isdigit() and int(logged) != threads:
        torch.set_num_threads(int(logged))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def rerun(ctx: Context, cfg: DictConfig, run_id: str, overrides: Sequence[str] = (),
          say: Say = print) -> Rerun:
    """Train ``run_id``'s logged config again, as logged, and compare; DataError when the data
    changed, ConfigError naming a key this code reads that the logged config lacks."""
    original = ctx.store.get_run(run_id)
    store = ctx.store.at(original.info.experiment_id)  # the re-run beside the original
    logged = read_logged(store, original)
    with as_logged(run_id):
        run_cfg = rerun_config(store, logged, cfg, overrides)
        bundle = ctx.data(run_cfg)
        same_data = check_data(store, original, run_cfg, bundle,
                               bool(cfg.rerun.allow_data_change))
        tags = {Tag.RERUN_OF: run_id}
        if not same_data:
            tags[Tag.DATA_CHANGED] = "true"
            say(f"note: data fingerprint {bundle.fingerprint} differs from the run's "
                f"{original.data.tags.get(Tag.DATA_FINGERPRINT)} (rerun.allow_data_change=true)")
        name = original.info.run_name or run_id
        say(f"re-running run {run_id} ({name}, backbone {run_cfg.backbone.name})", flush=True)
        with torch_threads(original.data.tags.get(Tag.TORCH_THREADS)):
            tags[Tag.TORCH_THREADS] = str(torch.get_num_threads())
            result = run_training(Context(ctx.state_dir, store, bundle), run_cfg,
                                  role=Role.RERUN, run_name=f"{name}-rerun", tags=tags)
    new = store.get_run(result.run_id)
    rows, worst = compare_metrics(original.data.metrics, new.data.metrics)
    return Rerun(result.run_id, run_id, result, rows, worst)
