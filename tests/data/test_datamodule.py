"""ChestXrayDataModule: uint8 batches, seeded order and augmentation, two augmented views,
weighted sampling, unaugmented val/test, workers that map the cache file, augmentation applied
by Lightning to training batches only; and the augmentation presets."""

from __future__ import annotations

import pickle

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.data.bundle import DataBundle, load_data
from pipeline.data.datamodule import ChestXrayDataModule, ImageRows, loader_workers
from pipeline.data.transforms import build_augmentation

SIZE = 24


def make_bundle(counts: tuple[int, int] = (40, 10), seed: int = 0) -> DataBundle:
    """An in-memory bundle: 80 % train, 10 % val, 10 % test, images distinct per row."""
    rng = np.random.default_rng(seed)
    n = sum(counts)
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    split = np.array(["train"] * n, dtype=object)
    split[rng.permutation(n)[: n // 5]] = "val"
    split[np.flatnonzero(split == "val")[::2]] = "test"
    return DataBundle(
        classes=["normal", "covid"],
        positive_class="covid",
        images=rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8),
        labels=labels,
        patients=np.array([f"p{i}" for i in range(n)]),
        split=split.astype(str),
        files=[f"f{i}" for i in range(n)],
        skipped=[],
        fingerprint="0" * 16,
        image_size=SIZE,
    )


def strong() -> object:
    return compose(["augmentation=strong"]).augmentation


def test_batches_are_uint8_with_int64_labels() -> None:
    dm = ChestXrayDataModule(make_bundle(), batch_size=8)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert x.dtype == torch.uint8 and x.shape[1:] == (1, SIZE, SIZE)
        assert y.dtype == torch.int64 and len(y) == len(x)


def test_two_views_are_independently_augmented() -> None:
    dm = ChestXrayDataModule(make_bundle(), batch_size=8, augmentation=strong(), two_views=True)
    x, y = dm.augment_batch(next(iter(dm.train_dataloader())))
    assert x.shape == (8, 2, 1, SIZE, SIZE) and x.dtype == torch.uint8
    assert not torch.equal(x[:, 0], x[:, 1])
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape[1:] == (1, SIZE, SIZE)  # evaluation: one unaugmented view


def test_val_and_test_are_ordered_and_unaugmented() -> None:
    bundle = make_bundle()
    dm = ChestXrayDataModule(bundle, batch_size=4, augmentation=strong())
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        rows = bundle.indices(split)
        got = torch.cat([x for x, _ in loader])
        assert torch.equal(got[:, 0], torch.from_numpy(bundle.images[rows]))
        assert torch.equal(torch.cat([y for _, y in loader]), torch.from_numpy(bundle.labels[rows]))


def train_epoch(dm: ChestXrayDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(123)  # the global RNG (as under seed_everything) plays no part
    xs, ys = zip(*map(dm.augment_batch, dm.train_dataloader()), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_seeded_order_repeats_and_seed_matters() -> None:
    bundle = make_bundle()
    a = train_epoch(ChestXrayDataModule(bundle, 8, augmentation=strong(), seed=3))
    b = train_epoch(ChestXrayDataModule(bundle, 8, augmentation=strong(), seed=3))
    c = train_epoch(ChestXrayDataModule(bundle, 8, augmentation=strong(), seed=4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    again = ChestXrayDataModule(bundle, 8, augmentation=strong(), seed=3)
    train_epoch(again)
    assert torch.equal(train_epoch(again)[0], a[0])  # a new loader (a new fit) starts over
    train_rows = bundle.indices("train")
    assert sorted(a[1].tolist()) == sorted(bundle.labels[train_rows].tolist())  # a permutation


def test_weighted_sampler_balances_classes() -> None:
    bundle = make_bundle(counts=(360, 40))
    labels = torch.cat([y for _, y in ChestXrayDataModule(bundle, 64, sampler="weighted")
                        .train_dataloader()])
    share = labels.float().mean().item()  # covid is 10 % of train, ~50 % of the draws
    assert len(labels) == len(bundle.indices("train")) and 0.4 < share < 0.6
    plain = torch.cat([y for _, y in ChestXrayDataModule(bundle, 64).train_dataloader()])
    assert plain.float().mean().item() < 0.15


def test_last_batch_of_one_is_dropped() -> None:
    bundle = make_bundle(counts=(33, 8))  # 41 rows -> train is 33 rows when 8 go to val/test
    train = len(bundle.indices("train"))
    dm = ChestXrayDataModule(bundle, batch_size=train - 1)
    assert [len(y) for _, y in dm.train_dataloader()] == [train - 1]


def test_loader_settings_follow_the_machine() -> None:
    dm = ChestXrayDataModule(make_bundle(), batch_size=8, num_workers=1)
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 1
    assert loader.pin_memory == torch.cuda.is_available()
    assert not ChestXrayDataModule(make_bundle(), 8).val_dataloader().persistent_workers


def test_auto_workers_take_no_cores_from_cpu_training(monkeypatch) -> None:
    preset = compose(["augmentation=light"]).augmentation
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only machine
    auto = ChestXrayDataModule(make_bundle(), 8, num_workers="auto", augmentation=preset)
    assert auto.train_dataloader().num_workers == 0
    assert auto.val_dataloader().num_workers == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    beside_gpu = ChestXrayDataModule(make_bundle(), 8, num_workers="auto", augmentation=preset)
    assert beside_gpu.num_workers >= 1 and beside_gpu.eval_workers == 0
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert loader_workers("auto", augmented=True) == 4  # a GPU trains while workers augment
    assert loader_workers("auto", augmented=False) == 0  # nothing to do in a worker
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert loader_workers("auto", augmented=True) == 1
    assert loader_workers(3, augmented=False) == 3
    for bad in ("many", -1):  # refused by the schema, as the config is composed
        with pytest.raises(ConfigError, match="dataset.num_workers"):
            compose([f"dataset.num_workers={bad}"])


def test_worker_gets_the_cache_file_not_a_copy(make_cfg) -> None:
    bundle = load_data(make_cfg("dataset.num_images=60", "dataset.image_size=32"))
    rows = ImageRows(bundle.images, bundle.labels, bundle.indices("train"))
    blob = pickle.dumps(rows)
    assert len(blob) < bundle.images.nbytes / 4
    clone = pickle.loads(blob)
    assert isinstance(clone.images, np.memmap)
    assert torch.equal(clone[0][0], rows[0][0])
    dm = ChestXrayDataModule.from_config(make_cfg("dataset.num_images=60",
                                                  "dataset.image_size=32", "dataset.batch_size=5",
                                                  "dataset.num_workers=1"), bundle)
    x, y = next(iter(dm.train_dataloader()))  # through a real worker process
    assert x.shape == (5, 1, 32, 32) and x.dtype == torch.uint8


@pytest.mark.parametrize("preset", ["none", "light", "paper", "strong"])
def test_augmentation_presets_keep_uint8_shape(preset: str) -> None:
    transform = build_augmentation(compose([f"augmentation={preset}"]).augmentation)
    if preset == "none":
        assert transform is None
        return
    x = torch.from_numpy(make_bundle().images[:4]).unsqueeze(1)
    out = transform(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == (4, 1, SIZE, SIZE)
    assert not torch.equal(out, x)


def test_bad_augmentation_and_loader_values() -> None:
    with pytest.raises(ConfigError, match="augmentation.translate"):
        build_augmentation({"name": "custom", "translate": [0.1]})
    with pytest.raises(ConfigError, match="augmentation.hflip=1.5"):
        build_augmentation({"name": "custom", "hflip": 1.5})
    assert build_augmentation({"name": "custom", "rotation": 0.0}) is None
    with pytest.raises(ConfigError, match="sampler"):
        compose(["dataset.sampler=oversample"])



class _Recorder(pl.LightningModule):
    """A model that learns nothing and keeps every batch Lightning hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch[0])
        return (self.weight * 0).sum()

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("two_views", [False, True])
def test_lightning_augments_training_batches_only(two_views: bool) -> None:
    bundle = make_bundle()
    dm = ChestXrayDataModule(bundle, 8, augmentation=strong(), two_views=two_views, seed=5)
    model = _Recorder()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, num_sanity_val_steps=0,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    train = torch.cat(model.seen["train"])
    expected = torch.cat([dm.augment_batch(b)[0] for b in dm.train_dataloader()])
    assert torch.equal(train, expected)  # the same draws, in the same order, as augment_batch
    assert train.shape[1:] == ((2, 1, SIZE, SIZE) if two_views else (1, SIZE, SIZE))
    raw = torch.cat([x for x, _ in dm.train_dataloader()])
    assert not torch.equal(train[:, 0] if two_views else train, raw)
    rows = bundle.indices("val")
    assert torch.equal(torch.cat(model.seen["val"])[:, 0], torch.from_numpy(bundle.images[rows]))
