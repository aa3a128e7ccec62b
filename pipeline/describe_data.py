"""Describe the configured dataset before training on it: classes, per-split counts, patients,
skipped files, duplicate images and the fingerprint; the last line is one JSON object.

    python -m pipeline.describe_data dataset=covid_chestxray dataset.image_size=64
"""

from __future__ import annotations

import logging
import warnings

from pipeline.common.cli import print_json_line, run
from pipeline.config import compose
from pipeline.data.duplicates import DuplicateImageWarning
from pipeline.data.report import print_description
from pipeline.data.sources import BadImageWarning
from pipeline.runs.context import open_context


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = compose(argv)
    with warnings.catch_warnings():
        # Skipped files and duplicates are listed below in full; the loader's one-line warnings
        # would repeat them. Other warnings (folders not read, repeated CSV rows) still show.
        warnings.simplefilter("ignore", BadImageWarning)
        warnings.simplefilter("ignore", DuplicateImageWarning)
        bundle = open_context(cfg, store=False).bundle  # nothing recorded: no store opened
    summary = bundle.summary()

    print_description(bundle, summary)
    print(f"fingerprint: {bundle.fingerprint}")
    print_json_line(summary)
    return 0


if __name__ == "__main__":
    run(main)
