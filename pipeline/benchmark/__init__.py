"""Speed figures of the pipeline, measured side by side (`python -m pipeline.bench` is its entry
point). The harness drives the stages as a user would, from the layer above them."""

from pipeline.benchmark.profiles import KEYS, PROFILES, TARGETS
from pipeline.benchmark.runner import main, run_bench

__all__ = ["KEYS", "PROFILES", "TARGETS", "main", "run_bench"]
