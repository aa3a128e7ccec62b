"""The split, kept on disk: a pure function of the labels, the patient groups, the fractions, the
seed and the given splits, which sklearn's StratifiedGroupKFold takes seconds to compute on tens
of thousands of patients. A warm start reads it back (one byte per image) instead.

Keyed on every input and on scikit-learn's version (its folds may change between releases), so
a cached split is always the one assign_splits would compute now.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import sklearn

from pipeline.common.atomic import atomic_save
from pipeline.data.decode_cache import cache_dir
from pipeline.data.hashing import digest_strings
from pipeline.data.splits import SPLIT_NAMES, assign_splits

_VERSION = 1  # bump when assign_splits changes what it computes


def cached_splits(
    state_dir: Path,
    labels: np.ndarray,
    groups: np.ndarray,
    classes: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    given: np.ndarray | None = None,
) -> np.ndarray:
    """assign_splits' result, computed once per distinct input (errors are never cached)."""
    header = json.dumps([_VERSION, sklearn.__version__, list(classes), float(val_fraction),
                         float(test_fraction), int(seed), len(labels), given is not None])
    key = digest_strings([header, np.asarray(labels, dtype=np.int64).tobytes().hex(),
                          *np.asarray(groups, dtype=str).tolist(),
                          *([] if given is None else np.asarray(given, dtype=str).tolist())])
    path = cache_dir(state_dir) / "splits" / f"{key[:32]}.npy"
    try:
        codes = np.load(path, allow_pickle=False)
        if codes.shape == (len(labels),) and codes.dtype == np.uint8 and codes.max(
                initial=0) < len(SPLIT_NAMES):
            return np.asarray(SPLIT_NAMES)[codes]
    except (OSError, ValueError):
        pass  # absent or torn: computed (and written) again
    split = assign_splits(labels, groups, classes, val_fraction, test_fraction, seed, given)
    index = {name: n for n, name in enumerate(SPLIT_NAMES)}
    try:
        codes = np.fromiter((index[s] for s in split.tolist()), np.uint8, len(split))
    except KeyError:
        return split  # a split name outside SPLIT_NAMES: served as computed, not cached
    with contextlib.suppress(OSError):  # a read-only cache still works, it splits again next time
        atomic_save(path, codes)
    return split
