"""Re-run a logged run: ``python -m pipeline.rerun RUN_ID [hydra overrides]``.

Rebuilds the run's config from its config.yaml, checks the data fingerprint (a mismatch stops
unless ``rerun.allow_data_change=true``), trains again as a new run tagged ``rerun_of=RUN_ID``
and prints every metric beside the original's. LAST line: ``{"run_id", "rerun_of",
"max_abs_diff"}``. Exit status: 0 re-run finished, 1 the re-run failed, 2 bad input.
"""

from __future__ import annotations

import os
import sys

from pipeline.common.cli import print_json_line, run
from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.runs.context import open_context
from pipeline.runs.rerun import format_rows, rerun
from pipeline.tracking.schema import State
from pipeline.training.signals import graceful_interrupts

USAGE = "usage: python -m pipeline.rerun RUN_ID [key=value ...]"


def main(argv: list[str]) -> int:
    if not argv or "=" in argv[0] or argv[0].startswith("-"):
        raise ConfigError(f"the run id to re-run comes first; {USAGE}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    run_id, overrides = argv[0], argv[1:]
    cfg = compose(overrides)
    ctx = open_context(cfg, data=False, missing=f"run '{run_id}' cannot be found")  # its own data
    with graceful_interrupts():
        outcome = rerun(ctx, cfg, run_id, overrides)
    result = outcome.result
    print(f"run {result.run_id}: {result.status} (re-run of {run_id})", flush=True)
    if result.error:
        print(f"error: {result.error}", file=sys.stderr, flush=True)
    print(format_rows(outcome.rows), flush=True)
    print_json_line({"run_id": result.run_id, "rerun_of": run_id,
                     "max_abs_diff": outcome.max_abs_diff})
    return 0 if result.state == State.COMPLETE else 1


if __name__ == "__main__":
    run(main)
