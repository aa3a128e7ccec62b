"""Speed figures of the pipeline, measured side by side (``python -m pipeline.bench``). The harness
sits beside the stages, outside the pipeline's import layers: it drives them as a user would."""

from pipeline.bench.profiles import KEYS, PROFILES, TARGETS
from pipeline.bench.runner import main, run_bench

__all__ = ["KEYS", "PROFILES", "TARGETS", "main", "run_bench"]
