"""Frozen-prefix feature cache: cached training = uncached, keys that miss on any change, and two
processes sharing one entry."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from pipeline.common.errors import ConfigError
from pipeline.config import PROJECT_ROOT, compose
from pipeline.data.bundle import load_data
from pipeline.data.datamodule import ChestXrayDataModule
from pipeline.models import build_model
from pipeline.runs.context import open_context
from pipeline.runs.training_run import run_training
from pipeline.tracking.store import tracking_uri
from pipeline.training.features.inputs import inputs_for
from pipeline.training.features.store import FeatureStore, features_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _entries(state_dir: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in features_dir(state_dir).rglob("*.npy")}


@pytest.mark.parametrize(
    ("depth", "augmentation", "use"), [(5, "none", "train+eval"), (3, "light", "eval")]
)
def test_cached_training_equals_uncached(tiny_overrides, state_dir, depth, augmentation, use,
                                        resnet18_weights):
    common = tiny_overrides(f"backbone.freeze_depth={depth}", f"augmentation={augmentation}",
                            f"backbone.weights_path={resnet18_weights}",
                            "tracking.log_model=false", "evaluate_test=true")
    plain_cfg = compose([*common, "trainer.feature_cache=false"])
    ctx = open_context(plain_cfg)  # as a sweep's trials: one store, one bundle
    plain = run_training(ctx, plain_cfg)
    assert not _entries(state_dir)
    cached_cfg = compose([*common, "trainer.feature_cache=true"])
    cached = run_training(ctx, cached_cfg)
    assert plain.state == cached.state == "COMPLETE", (plain.error, cached.error)
    assert set(plain.metrics) == set(cached.metrics)
    for name, value in plain.metrics.items():
        assert cached.metrics[name] == pytest.approx(value, abs=1e-5, nan_ok=True), name
    client = mlflow.MlflowClient(tracking_uri(cached_cfg))
    assert client.get_run(plain.run_id).data.tags["feature_cache"] == "off"
    assert client.get_run(cached.run_id).data.tags["feature_cache"] == use

    entries = _entries(state_dir)
    splits = {name.split("-")[0] for name in entries}
    assert splits == ({"train", "val", "test"} if use == "train+eval" else {"val", "test"})
    assert all(f"-d{depth}-s32-" in name for name in entries)
    if use == "train+eval":  # a later trial reads the entries instead of computing them again
        again = run_training(ctx, cached_cfg)
        assert again.metrics == cached.metrics
        assert _entries(state_dir) == entries


def _net(cfg, classes: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg, classes)


def test_any_change_of_weights_data_size_or_depth_misses(tiny_overrides, state_dir):
    root = features_dir(state_dir)
    cfg = compose(tiny_overrides("backbone.freeze_depth=3"))
    bundle = load_data(cfg)
    classes = len(bundle.classes)

    def computes(net, data=bundle) -> bool:
        store = FeatureStore(root, net, data)
        store.features("val")
        return bool(store.computed)

    net = _net(cfg, classes)
    first = FeatureStore(root, net, bundle).features("val")
    images = torch.from_numpy(np.asarray(bundle.images[bundle.indices("val")])).unsqueeze(1)
    torch.testing.assert_close(torch.from_numpy(np.array(first)),
                               net.eval().frozen_features(images))
    assert not computes(_net(cfg, classes))  # the same weights rebuilt: a hit
    with torch.no_grad():
        net.backbone.stages[4][0][0].conv1.weight.add_(1.0)  # an unfrozen stage: still a hit
    assert not computes(net)

    assert computes(_net(cfg, classes, seed=1))  # other random weights
    changed = _net(cfg, classes)
    with torch.no_grad():
        changed.backbone.stages[2][0][0].conv1.weight[0, 0, 0, 0] += 1e-3  # one frozen weight
    assert computes(changed)
    changed = _net(cfg, classes)
    changed.backbone.stages[0][1].running_mean[0] += 1e-3  # a frozen BatchNorm statistic
    assert computes(changed)
    deeper = _net(cfg, classes)
    deeper.set_freeze_depth(4)
    assert computes(deeper)

    other_data = load_data(compose(tiny_overrides("backbone.freeze_depth=3",
                                                  "dataset.num_images=80")))
    assert computes(_net(cfg, classes), other_data)
    other_size = compose(tiny_overrides("backbone.freeze_depth=3", "dataset.image_size=40"))
    assert computes(_net(other_size, classes), load_data(other_size))
    assert len(list(root.rglob("*.npy"))) == 7
    assert not list(root.rglob("*.tmp"))


def test_auto_caches_where_it_pays_and_false_never(tiny_overrides, state_dir):
    def plan(depth: int, policy: str):
        cfg = compose(tiny_overrides(f"backbone.freeze_depth={depth}",
                                     f"trainer.feature_cache={policy}"))
        bundle = load_data(cfg)
        data = ChestXrayDataModule.from_config(cfg, bundle)
        return inputs_for(cfg, _net(cfg, len(bundle.classes)), data,
                          root=features_dir(state_dir)).describe()

    # At 32 px the stem's output (64 x 8 x 8) outweighs the image (3 x 32 x 32): not cached.
    assert plan(1, "auto") == "off"
    assert plan(1, "true") == "train+eval"
    assert plan(3, "auto") == "train+eval"
    assert plan(3, "false") == "off"
    assert plan(0, "true") == "off"
    with pytest.raises(ConfigError, match="trainer.feature_cache"):
        plan(3, "sometimes")


# A child process's start: the tiny data and the seed-0 network of the overrides in argv[1].
CHILD = textwrap.dedent("""
    import hashlib, json, sys, time
    from pathlib import Path
    import numpy as np, torch
    torch.set_num_threads(1)
    import pipeline.training.features.store as features
    from pipeline.config import compose
    from pipeline.data.bundle import load_data
    from pipeline.training.features.store import FeatureStore
    from pipeline.models import build_model

    overrides, *args = json.loads(sys.argv[1])
    cfg = compose(overrides)
    bundle = load_data(cfg)
    torch.manual_seed(0)
    net = build_model(cfg, len(bundle.classes))
""")

WRITER = CHILD + textwrap.dedent("""
    state, me = args
    results = {}
    for lock in (True, False):
        store = FeatureStore(Path(state) / f"shared-lock-{lock}", net, bundle, lock=lock)
        Path(state, f"ready-{lock}-{me}").touch()
        while not Path(state, f"ready-{lock}-{1 - me}").exists():  # ask at the same moment
            time.sleep(0.005)
        array = store.features("train")
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        results[str(lock)] = {"digest": digest, "computed": bool(store.computed)}
    print(json.dumps(results))
""")


@pytest.mark.slow
def test_two_processes_share_one_entry(tiny_overrides, state_dir):
    overrides = tiny_overrides("backbone.freeze_depth=5")
    cfg = compose(overrides)
    bundle = load_data(cfg)  # the decoded data exists before the writers start
    reference = FeatureStore(state_dir / "reference", _net(cfg, len(bundle.classes)), bundle)
    expected = hashlib.sha256(np.ascontiguousarray(reference.features("train")).tobytes())

    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, json.dumps([overrides, str(state_dir), i])],
                         cwd=PROJECT_ROOT, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
        for i in range(2)
    ]
    found = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
        found.append(json.loads(out.strip().splitlines()[-1]))
    for lock in ("True", "False"):
        # Both read the features of the one key, as computed in this process.
        assert [r[lock]["digest"] for r in found] == [expected.hexdigest()] * 2, lock
        root = state_dir / f"shared-lock-{lock}"
        entries = list(root.rglob("*.npy"))
        assert len(entries) == 1 and not list(root.rglob("*.tmp"))
        array = np.load(entries[0], mmap_mode="r")
        assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == (
            expected.hexdigest())
    # With the lock, one process computes and the other waits for it and reads; without one,
    # both may compute and publish, and the last rename wins with identical bytes.
    assert sorted(r["True"]["computed"] for r in found) == [False, True]


KILLED_WRITER = CHILD + textwrap.dedent("""
    root, started = args
    original = features._frozen_output

    def first_batch_then_hang(*call):
        out = original(*call)
        Path(started).touch()  # its rows are about to go into the temp file
        time.sleep(600)
        return out

    features._frozen_output = first_batch_then_hang
    features.FeatureStore(root, net, bundle, batch_size=8).features("train")
""")


def test_a_writer_killed_mid_entry_leaves_nothing_that_is_read(tiny_overrides, state_dir):
    overrides = tiny_overrides("backbone.freeze_depth=3")
    cfg = compose(overrides)
    bundle = load_data(cfg)
    root, started = state_dir / "features", state_dir / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, json.dumps([overrides, str(root), str(started)])],
        cwd=PROJECT_ROOT, text=True, stderr=subprocess.PIPE)
    try:
        for _ in range(2400):
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert started.exists(), proc.stderr.read()[-2000:] if proc.poll() is not None else ""
        proc.send_signal(signal.SIGKILL)  # mid-entry, holding the entry's lock
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(root.rglob("*.tmp")) and not list(root.rglob("*.npy"))  # half an entry, unpublished

    net = _net(cfg, len(bundle.classes))
    store = FeatureStore(root, net, bundle)
    images = torch.from_numpy(np.asarray(bundle.images[bundle.indices("train")])).unsqueeze(1)
    expected = net.eval().frozen_features(images)
    torch.testing.assert_close(torch.from_numpy(np.array(store.features("train"))), expected)
    assert store.computed  # computed afresh: the killed writer's lock went with it

    (entry,) = root.rglob("*.npy")  # a published entry torn afterwards (a disk error, a copy)
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    again = FeatureStore(root, net, bundle)
    torch.testing.assert_close(torch.from_numpy(np.array(again.features("train"))), expected)
    assert again.computed


KILLED_AT_FAULT = CHILD + textwrap.dedent("""
    (root,) = args
    features.FeatureStore(root, net, bundle, batch_size=8).features("train")
""")


@pytest.mark.slow
def test_three_killed_writers_then_one_clean_run_leave_one_entry(tiny_overrides, state_dir):
    overrides = tiny_overrides("backbone.freeze_depth=3")
    cfg = compose(overrides)
    bundle = load_data(cfg)
    root = state_dir / "features"
    env = {**os.environ, "PIPELINE_FAULT": "features"}  # SIGKILL after the first batch's rows
    for _ in range(3):
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_AT_FAULT, json.dumps([overrides, str(root)])],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # Each writer, under the entry's lock, removed the file the one before it left: one is there.
    assert len(list(root.rglob("*.npy.*.tmp"))) == 1

    store = FeatureStore(root, _net(cfg, len(bundle.classes)), bundle, batch_size=8)
    store.features("train")
    assert store.computed and not list(root.rglob("*.tmp"))
    (entry,) = root.rglob("*.npy")
    kept = {p for p in root.rglob("*") if p.is_file() and p.stat().st_size}
    assert kept == {entry, entry.with_suffix(".json")}  # and the entry's empty lock file
    used = sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file())
    assert used == sum(p.stat().st_blocks * 512 for p in kept)
