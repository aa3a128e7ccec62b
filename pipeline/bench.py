"""Measure the pipeline's speed:
``python -m pipeline.bench [--quick | --gpu] [--out FILE] [--only ...]``.

Prints one JSON object of ratios measured side by side as its LAST line; each figure and its
target: pipeline.benchmark.profiles.
"""

import sys

from pipeline.benchmark.runner import main

if __name__ == "__main__":
    sys.exit(main())
