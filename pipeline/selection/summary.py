"""What a selection hands on: the registered version's tags (how to serve the champion) and the
JSON summary ``pipeline.select_best`` prints last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.evidence.bootstrap import Resamples
from pipeline.selection.assessment import Assessed
from pipeline.selection.competition import Competition
from pipeline.selection.recipes import Recipes
from pipeline.tracking.schema import VersionTag


def version_tags(winner: Assessed, comp: Competition, selection_id: str,
                 operating_point: str) -> dict[VersionTag, str]:
    """Every tag, "none" included, so that a version registered again carries no stale value."""
    cal = winner.served.calibration
    return {
        VersionTag.RUN_ID: winner.candidate.run_id, VersionTag.METRIC: comp.metric,
        VersionTag.VALUE: repr(winner.candidate.value), VersionTag.BACKBONE: winner.backbone,
        VersionTag.DATASET: comp.dataset, VersionTag.DATA_FINGERPRINT: comp.fingerprint,
        VersionTag.SELECTION_RUN_ID: selection_id, VersionTag.OPERATING_POINT: operating_point,
        VersionTag.THRESHOLD: "none" if cal.threshold is None else repr(cal.threshold),
        VersionTag.TEMPERATURE: "none" if cal.temperature is None else repr(cal.temperature),
        VersionTag.TEMPERATURE_SCOPE: "network",
        VersionTag.THRESHOLD_SCALE: "unscaled" if cal.temperature is None else "calibrated",
    }


def calibration_line(winner: Assessed) -> str:
    bound = " (stopped at its search bound)" if winner.served.calibration.at_bound else ""
    return (f"calibration of {winner.backbone}: temperature {winner.temperature:.3f}{bound}, "
            "applied to each of its networks before averaging, fitted on their validation "
            f"predictions; test ECE {winner.ece_before:.4f} unscaled, {winner.ece:.4f} "
            "calibrated (as served)")


def summary(winner: Assessed, model_run: Any, comp: Competition, model_name: str, version: str,
            rows: list[dict], samples: Resamples, uses: int, rec: Recipes | None,
            limits: Sequence[str], operating_point: str) -> dict:
    cal = winner.served.calibration
    return {
        "champion_run_id": model_run.info.run_id, "backbone": winner.backbone,
        "metric": comp.metric, "value": winner.candidate.value, "model_name": model_name,
        "version": version, "table": rows,
        "cv_folds": int(winner.candidate.reference_run.data.params.get("objective.cv_folds", 1)),
        "operating_point": operating_point,
        "n_replicates": len(samples), "bootstrap_unit": samples.unit,
        "paired_test": f"paired {samples.unit} bootstrap",
        "test_uses": uses,
        "search_gain_test": rec.as_json() if rec is not None else None,
        "search_gain_val": None if rec is None else {"value": rec.value, "metric": rec.metric,
                                                     "optimistic": True},
        "calibration": {
            "temperature": cal.temperature, "at_bound": cal.at_bound, "scope": "network",
            "threshold": cal.threshold, "ece_before": winner.ece_before,
            "ece_after": winner.ece, "val_nll_before": winner.served.val_nll_before,
            "val_nll_after": winner.served.val_nll_after},
        "limitations": list(limits),
    }
