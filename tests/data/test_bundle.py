"""DataBundle API, the one bundle a command hands down, and the fingerprint: the fingerprint moves
with a label, a split or an image's bytes, and with nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from xray_files import write_image

from pipeline.data.bundle import load_data
from pipeline.runs.context import Context


@pytest.fixture
def manifest_root(tmp_path: Path) -> Path:
    """20 images of 10 patients, labels 'x' (14) and 'y' (6), listed in m.csv."""
    root = tmp_path / "r"
    rows = []
    for i in range(20):
        write_image(root / f"{i:02d}.png", seed=i)
        rows.append((f"{i:02d}.png", "y" if i % 10 >= 7 else "x", f"pt{i // 2}"))
    pd.DataFrame(rows, columns=["path", "label", "patient_id"]).to_csv(root / "m.csv", index=False)
    return root


def load(make_cfg, root: Path, *extra: str):
    return load_data(make_cfg("dataset=manifest", f"dataset.root={root}", "dataset.csv=m.csv",
                              "dataset.positive_class=y", "dataset.image_size=32",
                              "dataset.val_fraction=0.2",
                              "dataset.test_fraction=0.2", *extra))


def test_api_counts_weights_and_manifest(manifest_root: Path, make_cfg, tmp_path: Path) -> None:
    bundle = load(make_cfg, manifest_root)
    assert bundle.classes == ["x", "y"] and bundle.image_size == 32
    assert bundle.class_counts() == {"x": 14, "y": 6}
    per_split = [bundle.class_counts(s) for s in ("train", "val", "test")]
    assert [sum(c[k] for c in per_split) for k in ("x", "y")] == [14, 6]
    train = bundle.labels[bundle.indices("train")]
    weights = bundle.class_weights()
    assert weights.dtype == torch.float32 and weights.shape == (2,)
    expected = len(train) / (2 * np.bincount(train, minlength=2))
    assert torch.allclose(weights, torch.tensor(expected, dtype=torch.float32))
    out = bundle.write_manifest(tmp_path / "out" / "manifest.csv")
    frame = pd.read_csv(out, dtype=str)
    assert list(frame.columns) == ["file", "label", "patient", "split"]
    assert frame["file"].tolist() == bundle.files and frame["split"].tolist() == list(bundle.split)
    with pytest.raises(ValueError):
        bundle.indices("holdout")


def test_one_bundle_serves_its_dataset_config_and_state_dir(manifest_root: Path, make_cfg,
                                                            state_dir: Path) -> None:
    cfg = make_cfg("dataset=manifest", f"dataset.root={manifest_root}", "dataset.csv=m.csv",
                   "dataset.positive_class=y", "dataset.image_size=32",
                   "dataset.val_fraction=0.2",
                   "dataset.test_fraction=0.2")
    first = load_data(cfg)
    ctx = Context(state_dir, bundle=first)  # what a command hands down
    assert ctx.data(cfg) is first
    cfg.dataset.batch_size = 4  # loader-only keys do not need a new bundle
    cfg.dataset.sampler = "weighted"
    assert ctx.data(cfg) is first
    cfg.dataset.image_size = 40
    assert ctx.data(cfg) is not first
    cfg.dataset.image_size = 32
    cfg.state_dir = str(state_dir / "elsewhere")
    assert ctx.data(cfg) is not first


def test_fingerprint_stable_when_nothing_changes(manifest_root: Path, make_cfg) -> None:
    first = load(make_cfg, manifest_root).fingerprint
    assert load(make_cfg, manifest_root).fingerprint == first
    # The working size is preprocessing, not data: same files, labels and split, same fingerprint.
    assert load(make_cfg, manifest_root, "dataset.image_size=40").fingerprint == first


def test_fingerprint_changes_with_a_label(manifest_root: Path, make_cfg) -> None:
    first = load(make_cfg, manifest_root).fingerprint
    frame = pd.read_csv(manifest_root / "m.csv", dtype=str)
    frame.loc[0, "label"] = "y"
    frame.to_csv(manifest_root / "m.csv", index=False)
    assert load(make_cfg, manifest_root).fingerprint != first


def test_fingerprint_changes_with_the_split(manifest_root: Path, make_cfg) -> None:
    first = load(make_cfg, manifest_root)
    other = load(make_cfg, manifest_root, "dataset.seed=5")
    assert not np.array_equal(first.split, other.split)
    assert other.fingerprint != first.fingerprint


def test_fingerprint_changes_with_image_bytes(manifest_root: Path, make_cfg) -> None:
    first = load(make_cfg, manifest_root).fingerprint
    write_image(manifest_root / "03.png", "RGB", seed=77)
    assert load(make_cfg, manifest_root).fingerprint != first
