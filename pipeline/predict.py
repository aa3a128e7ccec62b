"""Predict chest X-ray images: ``python -m pipeline.predict IMAGE [IMAGE ...]
[--model champion|RUN_ID] [--cam DIR] [hydra overrides]``.

Prints one JSON object per image, in order: ``{"image", "label", "probabilities",
"temperature", "threshold"}`` (the champion's probabilities calibrated with its stored
temperature, its label decided at its stored threshold; null where none applies), or
``{"image", "error"}`` for an image that cannot be read (the others are still predicted).
``--cam DIR`` writes a Grad-CAM overlay PNG per image there. Exit status: 0 all predicted,
1 some image unreadable, 2 bad input (no model, unknown run, bad override).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.common.cli import print_json_line, run
from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.inference.cams import CamWriter
from pipeline.inference.gradcam import rebuild_net
from pipeline.inference.prediction import predict_files, resolve_model, split_overrides
from pipeline.runs.context import open_context
from pipeline.tracking.logged import as_logged, read_logged


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__)
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (and key=value config overrides)")
    parser.add_argument("--model", default="champion",
                        help="'champion' (the registered champion) or an MLflow run id")
    parser.add_argument("--cam", metavar="DIR", type=Path, help="write Grad-CAM overlays here")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    images, overrides = split_overrides(args.images)
    if not images:
        raise ConfigError("no image to predict: python -m pipeline.predict IMAGE [IMAGE ...]")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    cfg = compose(overrides)
    ctx = open_context(cfg, data=False, missing=f"no model {args.model} to predict with")
    served = resolve_model(ctx.store, cfg, args.model)
    model, cal = served.model, served.calibration
    if served.note:
        print(f"note: {served.note}", file=sys.stderr, flush=True)
    if cal.temperature is not None:
        print(f"calibration: temperature {cal.temperature:.4f} on each network's probabilities "
              "before averaging (fitted on validation by select_best)", file=sys.stderr,
              flush=True)
    if cal.threshold is not None:
        print(f"operating point: {model.positive_class} when its probability is at least "
              f"{cal.threshold:.4f} (chosen on validation by select_best)", file=sys.stderr,
              flush=True)
    cams = None
    if args.cam:
        with as_logged(served.run_id):
            net = rebuild_net(read_logged(ctx.store, served.run_id).config, model)
        cams = CamWriter(net, model, args.cam)
    failed = 0
    for pred in predict_files(served, images):
        print_json_line(pred.as_json())
        if pred.error is not None:
            failed += 1
        elif cams is not None:
            print(f"cam: {cams.write(pred)}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    run(main)
