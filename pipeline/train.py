"""Train one CNN: ``python -m pipeline.train [hydra overrides]``.

Prints the MLflow run id and, as its LAST line, ``{"run_id", "status", "metrics"}``.
Exit status: 0 finished, 1 the training failed (reason logged with the run), 2 bad input (no run
is opened for it).
"""

from __future__ import annotations

import sys

from pipeline.common.cli import print_json_line, run
from pipeline.config import compose
from pipeline.runs.context import open_context
from pipeline.runs.training_run import run_training
from pipeline.runs.transfer import with_transfer
from pipeline.tracking.schema import State
from pipeline.training.checks import refuse_bad_settings
from pipeline.training.signals import graceful_interrupts


def main(argv: list[str]) -> int:
    cfg, argv = with_transfer(compose(argv), argv)  # backbone.weights=run:... named and fetched
    refuse_bad_settings(cfg)
    with graceful_interrupts():
        ctx = open_context(cfg)  # the store and the data, before any run is opened
        result = run_training(ctx, cfg, run_name=f"{cfg.backbone.name}-train")
    print(f"run {result.run_id}: {result.status}", flush=True)
    if result.error:
        print(f"error: {result.error}", file=sys.stderr, flush=True)
    print_json_line({"run_id": result.run_id, "status": result.status, "metrics": result.metrics})
    return 0 if result.state == State.COMPLETE else 1


if __name__ == "__main__":
    run(main)
