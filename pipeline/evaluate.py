"""External validation: ``python -m pipeline.evaluate [--model champion|RUN_ID] dataset=<name>
dataset.root=... [evaluate.label_map={...}]``.

Scores a logged model on every image of another dataset (no split) with the metrics of its test,
served as it is (the champion: calibrated, at its stored operating point), and logs a run tagged
``role=external``. Images that are also in the model's development data are left out and
counted. LAST line: ``{"run_id", "model_run_id", "dataset", "n_images", "n_overlap",
"metrics", "intervals", "n_replicates"}``. Exit status: 0 evaluated, 2 bad input.
"""

from __future__ import annotations

import argparse
import os

from pipeline.common.cli import print_json_line, run
from pipeline.config import compose
from pipeline.inference.prediction import resolve_model
from pipeline.runs.context import open_context
from pipeline.runs.external import evaluate_external


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__)
    parser.add_argument("--model", default="champion",
                        help="'champion' (the registered champion) or an MLflow run id")
    args, overrides = parser.parse_known_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    cfg = compose(overrides)
    ctx = open_context(cfg, data=False, missing=f"no model {args.model} to evaluate")
    served = resolve_model(ctx.store, cfg, args.model)
    if served.note:
        print(f"note: {served.note}", flush=True)
    result = evaluate_external(cfg, ctx.store, served, ctx.store.get_run(served.run_id))
    print(f"external run {result.run_id}: {result.n_images} images of {result.dataset}",
          flush=True)
    print_json_line({"run_id": result.run_id, "model_run_id": result.model_run_id,
                     "dataset": result.dataset, "n_images": result.n_images,
                     "n_overlap": result.n_overlap, "metrics": result.metrics,
                     "intervals": result.intervals, "n_replicates": result.n_replicates})
    return 0


if __name__ == "__main__":
    run(main)
