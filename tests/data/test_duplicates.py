"""Duplicate images across splits: exact copies (same bytes) and near-duplicates (difference hash),
grouped into one split, warned about or refused; reported by describe_data."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from xray_files import chest_like, png_bytes, write_image

from pipeline.common.errors import ConfigError, DataError
from pipeline.data import dhash, duplicates
from pipeline.data.bundle import load_data
from pipeline.data.duplicates import DuplicateImageWarning, difference_hashes, distances
from pipeline.data.images import decode_image
from pipeline.describe_data import main as describe_main

# Seeds whose re-encoded or rescaled copies stay well within the default threshold.
COPY_SEEDS = (5, 9, 10, 12, 13)


def jpeg_copy(src: Path, dst: Path, scale: float = 1.0) -> Path:
    """``src`` re-encoded as JPEG (and rescaled): other bytes, the same radiograph."""
    with Image.open(src) as img:
        img = img.convert("RGB")
        if scale != 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)))
        img.save(dst, format="JPEG", quality=90)
    return dst


def hash_of(source, size: int = 32) -> np.ndarray:
    return difference_hashes(decode_image(source, size)[None])


# --- the hash and the pair search --------------------------------------------------------------


def test_copies_hash_close_and_other_images_far(tmp_path: Path) -> None:
    for seed in COPY_SEEDS:
        original = write_image(tmp_path / f"{seed}.png", seed=seed, size=48)
        base = hash_of(original)
        for n, scale in enumerate((1.0, 0.8)):
            copy = hash_of(jpeg_copy(original, tmp_path / f"{seed}-{n}.jpg", scale))
            assert distances(copy, base)[0, 0] <= duplicates.DEFAULT_BITS
    hashes = difference_hashes(np.stack([decode_image(png_bytes(chest_like(48, s)), 32)
                                         for s in range(40)]))
    far = distances(hashes, hashes)[np.triu_indices(40, 1)]
    assert far.min() > duplicates.DEFAULT_BITS


def test_images_shared_with_another_dataset_are_found_by_the_same_hash(tmp_path: Path) -> None:
    """External validation's guard: which images of one set are also in another (re-encoded,
    rescaled), found as the split finds duplicates; none among different radiographs."""
    reference = np.stack([decode_image(png_bytes(chest_like(48, s)), 32) for s in range(20)])
    copies = [jpeg_copy(write_image(tmp_path / f"{s}.png", seed=s, size=48),
                        tmp_path / f"{s}.jpg", 0.8) for s in COPY_SEEDS[:3]]
    others = [decode_image(png_bytes(chest_like(48, s)), 32) for s in range(100, 104)]
    images = np.stack([*(decode_image(c, 32) for c in copies), *others])
    shared = duplicates.shared_with(images, reference, None, duplicates.DEFAULT_BITS)
    assert shared.tolist() == [True] * 3 + [False] * 4
    exact_only = duplicates.shared_with(images, reference, None, None)
    assert not exact_only.any()  # re-encoded: other pixels
    assert duplicates.shared_with(reference[:2], reference, None, None).all()


def test_hash_is_integer_exact_and_works_at_tiny_sizes() -> None:
    images = np.stack([chest_like(s, 3) for s in (8,)] * 2)
    hashes = difference_hashes(images)
    assert hashes.shape == (2, 32) and hashes.dtype == np.uint8
    assert np.array_equal(hashes[0], hashes[1])
    flat = difference_hashes(np.full((1, 40, 40), 77, np.uint8))
    assert not flat.any()  # no neighbour is brighter: all bits 0


@pytest.mark.parametrize("max_bits", [0, 3, 10])
def test_near_pairs_agree_with_brute_force(max_bits: int) -> None:
    rng = np.random.default_rng(max_bits)
    hashes = rng.integers(0, 256, (400, 32), dtype=np.uint8)
    bits = np.unpackbits(hashes, axis=1)
    for i in range(0, 60, 3):  # plant pairs 0..12 bits apart
        flip = rng.choice(256, size=i % 13, replace=False)
        row = bits[i].copy()
        row[flip] ^= 1
        hashes[i + 1] = np.packbits(row)
    dist = distances(hashes, hashes)
    i, j = np.nonzero(np.triu(dist <= max_bits, 1))
    expected = sorted(zip(i.tolist(), j.tolist(), dist[i, j].tolist(), strict=True))
    assert sorted(map(tuple, duplicates.near_pairs(hashes, max_bits).tolist())) == expected


def test_groups_join_exact_and_near_transitively() -> None:
    content = ["a", "b", "a", "c", "d", "e"]
    hashes = np.zeros((6, 32), np.uint8)
    hashes[:, 0] = [0, 1, 0, 2, 4, 255]  # rows 3 and 4 differ in 2 bits, row 1 in 1 from row 0
    groups = duplicates.find_groups(content, hashes, 2)
    assert [(g.rows, g.exact) for g in groups] == [((0, 1, 2, 3, 4), False)]
    assert groups[0].bits == 2
    exact_only = duplicates.find_groups(content, hashes, None)
    assert [(g.rows, g.exact, g.bits) for g in exact_only] == [((0, 2), True, 0)]
    assert "same file content" in exact_only[0].kind()


def test_merge_patients_only_touches_duplicates() -> None:
    patients = np.array(["p3", "p1", "p2", "p4", "p3"])
    merged = duplicates.merge_patients(patients, duplicates.find_groups(
        ["x", "y", "x", "z", "w"], None, None))  # rows 0 and 2: patients p3 and p2
    assert merged.tolist() == ["p2", "p1", "p2", "p4", "p2"]
    assert duplicates.merge_patients(patients, []) is patients


# --- through load_data -------------------------------------------------------------------------


def cohort(root: Path, pairs: int = 0, near: bool = False, split: bool = False) -> Path:
    """24 images of 12 patients (labels x/y by patient) in root/m.csv, plus ``pairs`` images
    that copy another patient's image (exact bytes, or JPEG re-encodes with ``near``)."""
    rows = []
    for i in range(24):
        name = f"{i:02d}.png"
        write_image(root / name, seed=i + 20, size=48)
        rows.append((name, "xy"[(i // 2) % 2], f"p{i // 2:02d}", "train"))
    for k in range(pairs):
        source = root / f"{COPY_SEEDS[k % len(COPY_SEEDS)]:02d}.png"
        write_image(source, seed=COPY_SEEDS[k % len(COPY_SEEDS)], size=48)
        name = f"copy{k}.jpg" if near else f"copy{k}.png"
        if near:
            jpeg_copy(source, root / name, scale=0.8)
        else:
            shutil.copyfile(source, root / name)
        label = rows[int(source.stem)][1]
        rows.append((name, label, f"q{k:02d}", "test"))
    frame = pd.DataFrame(rows, columns=["path", "label", "patient_id", "split"])
    if not split:
        frame = frame.drop(columns="split")
    frame.to_csv(root / "m.csv", index=False)
    return root


def load(make_cfg, root: Path, *extra: str):
    return load_data(make_cfg("dataset=manifest", f"dataset.root={root}", "dataset.csv=m.csv",
                              "dataset.positive_class=y", "dataset.image_size=32",
                              "dataset.val_fraction=0.25",
                              "dataset.test_fraction=0.25", *extra))


def quiet_load(make_cfg, root: Path, *extra: str):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        bundle = load(make_cfg, root, *extra)
    return bundle, [str(w.message) for w in record if w.category is DuplicateImageWarning]


@pytest.mark.parametrize("near", [False, True], ids=["exact", "near"])
def test_group_keeps_each_duplicate_group_in_one_split(tmp_path: Path, make_cfg,
                                                       near: bool) -> None:
    root = cohort(tmp_path / "r", pairs=4, near=near)
    bundle, warned = quiet_load(make_cfg, root)
    assert len(bundle.duplicates) == 4 and not warned
    for group in bundle.duplicates:
        assert group.exact is not near
        assert len({bundle.split[r] for r in group.rows}) == 1
        assert {bundle.files[r] for r in group.rows} & {f"copy{k}.{'jpg' if near else 'png'}"
                                                         for k in range(4)}
    summary = bundle.summary()
    assert summary["duplicate_groups"] == 4 and summary["duplicates_across_splits"] == 0
    assert summary["patient_overlap"] == 0
    assert bundle.patients.tolist()[-4:] == ["q00", "q01", "q02", "q03"]  # ids stay as given


def test_warn_leaves_the_split_and_counts(tmp_path: Path, make_cfg) -> None:
    root = cohort(tmp_path / "r", pairs=5)
    grouped, _ = quiet_load(make_cfg, root)
    bundle, warned = quiet_load(make_cfg, root, "dataset.on_duplicate=warn")
    crossing = bundle.duplicates_across_splits()
    assert crossing > 0 and not np.array_equal(bundle.split, grouped.split)
    assert len(warned) == 1 and "\n" not in warned[0]
    assert warned[0].startswith(f"{crossing} of 5 duplicate image group(s) under {root} straddle")
    assert "(train) = " in warned[0] or "(val) = " in warned[0] or "(test) = " in warned[0]
    assert "dataset.on_duplicate=group" in warned[0]
    assert bundle.summary()["duplicates_across_splits"] == crossing


def test_error_lists_pairs_and_the_fix(tmp_path: Path, make_cfg) -> None:
    root = cohort(tmp_path / "r", pairs=4, near=True)
    with pytest.raises(DataError) as info:
        load(make_cfg, root, "dataset.on_duplicate=error")
    message = str(info.value)
    assert "\n" not in message and message.startswith("4 duplicate image group(s) span more than")
    assert "05.png (patient p02) ~ copy0.jpg (patient q00)" in message and "and 1 more" in message
    assert "dataset.on_duplicate=group" in message


def test_no_duplicates_no_change(tmp_path: Path, make_cfg) -> None:
    root = cohort(tmp_path / "r")
    grouped, _ = quiet_load(make_cfg, root)
    assert grouped.duplicates == [] and grouped.summary()["duplicates_across_splits"] == 0
    for extra in ("dataset.on_duplicate=warn", "dataset.near_duplicate_bits=null"):
        other, warned = quiet_load(make_cfg, root, extra)
        assert np.array_equal(other.split, grouped.split) and not warned
        assert other.fingerprint == grouped.fingerprint


def test_exact_copies_found_with_near_detection_off(tmp_path: Path, make_cfg) -> None:
    root = cohort(tmp_path / "r", pairs=2)
    bundle, _ = quiet_load(make_cfg, root, "dataset.near_duplicate_bits=null")
    assert [g.exact for g in bundle.duplicates] == [True, True]
    near = cohort(tmp_path / "n", pairs=2, near=True)
    assert quiet_load(make_cfg, near, "dataset.near_duplicate_bits=null")[0].duplicates == []


def test_given_splits_are_kept_and_warned_about(tmp_path: Path, make_cfg) -> None:
    root = cohort(tmp_path / "r", pairs=1, split=True)  # the copy is given test, its source train
    bundle, warned = quiet_load(make_cfg, root, "dataset.val_fraction=0.2")
    assert bundle.split[bundle.files.index("copy0.png")] == "test"
    assert bundle.duplicates_across_splits() == 1
    assert len(warned) == 1 and "given splits" in warned[0] and "delete the copies" in warned[0]


def test_duplicates_with_different_labels_are_named(tmp_path: Path, make_cfg) -> None:
    root = cohort(tmp_path / "r", pairs=1)
    frame = pd.read_csv(root / "m.csv")
    frame.loc[frame.path == "copy0.png", "label"] = "x" if frame.label.iloc[5] == "y" else "y"
    frame.to_csv(root / "m.csv", index=False)
    _, warned = quiet_load(make_cfg, root)
    assert len(warned) == 1 and "1 duplicate image group(s)" in warned[0]
    assert "carry different labels: 05.png (" in warned[0] and "check those labels" in warned[0]


def test_hashes_are_cached_beside_the_decoded_array(tmp_path: Path, make_cfg,
                                                    monkeypatch) -> None:
    root = cohort(tmp_path / "r", pairs=2, near=True)
    first, _ = quiet_load(make_cfg, root)
    cached = list(first.images_path.parent.glob("*.dhash*"))
    assert len(cached) == 1

    def no_hashing(images):
        raise AssertionError("hashed again instead of reading the cached hashes")

    monkeypatch.setattr(dhash, "difference_hashes", no_hashing)  # what cached_hashes calls
    for groups in first.images_path.parent.glob("*.groups*"):
        groups.unlink()  # the groups are found again, from the cached hashes
    second, _ = quiet_load(make_cfg, root)
    assert second.duplicates == first.duplicates and second.fingerprint == first.fingerprint


def test_groups_are_cached_beside_the_decoded_array(tmp_path: Path, make_cfg,
                                                    monkeypatch) -> None:
    root = cohort(tmp_path / "r", pairs=2, near=True)
    first, _ = quiet_load(make_cfg, root)
    assert first.duplicates and len(list(first.images_path.parent.glob("*.groups*"))) == 1

    def no_search(*args):
        raise AssertionError("searched again instead of reading the cached groups")

    monkeypatch.setattr(duplicates, "find_groups", no_search)
    second, _ = quiet_load(make_cfg, root)
    assert second.duplicates == first.duplicates and second.fingerprint == first.fingerprint
    with pytest.raises(AssertionError, match="searched again"):  # another threshold: searched
        quiet_load(make_cfg, root, "dataset.near_duplicate_bits=null")


def test_synthetic_has_no_duplicates(make_cfg) -> None:
    bundle = load_data(make_cfg("dataset.num_images=120", "dataset.image_size=32"))
    assert bundle.duplicates == [] and bundle.summary()["duplicates_across_splits"] == 0
    with_near = load_data(make_cfg("dataset.num_images=120", "dataset.image_size=32",
                                   "dataset.near_duplicate_bits=4"))
    assert with_near.duplicates_across_splits() == 0


def test_describe_prints_groups_and_the_count(tmp_path: Path, state_dir: Path, capsys) -> None:
    root = cohort(tmp_path / "r", pairs=2, near=True)
    assert describe_main(["dataset=manifest", f"dataset.root={root}", "dataset.csv=m.csv",
                          "dataset.positive_class=y", "dataset.image_size=32",
                          "dataset.val_fraction=0.25",
                          "dataset.test_fraction=0.25", f"state_dir={state_dir}"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["duplicates_across_splits"] == 0 and summary["duplicate_groups"] == 2
    assert "duplicate image groups: 2 (0 across splits)" in captured.out
    shown = [line for line in lines if line.startswith("  ") and "copy" in line]
    assert len(shown) == 2 and ", patient q00]" in captured.out
    assert "DuplicateImageWarning" not in captured.err


@pytest.mark.parametrize(
    ("override", "text"),
    [("dataset.on_duplicate=merge", "use group, warn or error"),
     ("dataset.near_duplicate_bits=300", "must be an integer from 0 to 64")],
)
def test_bad_duplicate_settings(make_cfg, override: str, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        load_data(make_cfg("dataset.num_images=60", "dataset.image_size=32", override))


def test_jpeg_copy_helper_really_changes_the_bytes(tmp_path: Path) -> None:
    src = write_image(tmp_path / "a.png", seed=5, size=48)
    copy = jpeg_copy(src, tmp_path / "a.jpg", scale=0.8)
    assert copy.read_bytes() != src.read_bytes()
    assert Image.open(io.BytesIO(copy.read_bytes())).size == (38, 38)
