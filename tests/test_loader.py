"""data.loader: temporal sampling, packed vs unpacked reads, augmentation, batch order, store checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from microaction.data.loader import ClipDataset, check_store, sample_steps, select_samples, store_keys
from microaction.data.readers.annotations import read_manifest_csv
from microaction.data.samplers import EvalBatchSampler, TrainBatchSampler, class_weights
from microaction.data.store import FeatureStore, StoreError, StoreMismatch
from microaction.engine.testing import make_random_dataset
from microaction.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loader")
    return make_random_dataset(root, splits={"train": 24, "val": 8}, lengths=(3, 30), seed=1)


def _dataset(ds: dict[str, Path], store: FeatureStore | None = None, **kw: object) -> ClipDataset:
    tax = load_taxonomy(ds["taxonomy"])
    samples = read_manifest_csv(ds["manifest"], tax, split="train")
    return ClipDataset(store or FeatureStore.open(ds["store"]), samples, tax, num_steps=8, **kw)  # type: ignore[arg-type]


def test_sample_steps() -> None:
    assert sample_steps(5, 8).tolist() == [0, 1, 2, 3, 4]  # short clip: every step, the caller pads
    assert sample_steps(16, 4).tolist() == [2, 6, 10, 14]  # segment centres
    rng = np.random.default_rng(0)
    for L in (9, 17, 100):
        idx = sample_steps(L, 8, "jitter", rng)
        seg = np.floor(np.arange(8) * L / 8)
        assert len(idx) == 8 and (np.diff(idx) >= 0).all() and idx.max() < L
        assert ((idx >= seg) & (idx < np.floor(np.arange(1, 9) * L / 8) + 1)).all()  # one step per segment
    with pytest.raises(ValueError):
        sample_steps(0, 8)


def test_batch_contract_and_padding(ds: dict[str, Path]) -> None:
    d = _dataset(ds)
    b = d.__getitems__(list(range(len(d))))
    B = len(d)
    assert b["regions"].shape == (B, 4, 8, 16) and b["regions"].dtype == torch.float32
    assert b["global"].shape == (B, 8, 16) and b["mask"].dtype == torch.bool and b["region_valid"].shape == (B, 4)
    assert b["action"].tolist() == d.action.tolist() and b["index"].tolist() == list(range(B))
    store = FeatureStore.open(ds["store"])
    for i in range(B):
        L = store.read(d.keys[i]).length
        assert int(b["mask"][i].sum()) == min(L, 8)
        assert not b["global"][i, min(L, 8) :].any()  # padding is zero
        assert not b["regions"][i][~b["region_valid"][i]].any()  # invisible regions carry zeros


def test_packed_reads_equal_item_reads(ds: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(ds["store"], tmp_path / "store")
    packed = FeatureStore.open(tmp_path / "store")
    packed.pack()
    a, p = _dataset(ds), _dataset(ds, packed)
    keys = [(i, 3, 10 + i) for i in range(len(a))]  # training keys: jittered sampling
    ba, bp = a.__getitems__(keys), p.__getitems__(keys)
    assert p._packed_index() is not None
    for k in ba:
        assert torch.equal(ba[k], bp[k]), k


def test_augmentation_is_a_function_of_the_key(ds: dict[str, Path]) -> None:
    d = _dataset(ds, sampling="jitter", flip_prob=0.5, region_drop_prob=0.3, feature_noise=0.1, seed=5)
    keys = [(i, 2, i) for i in range(len(d))]
    b1, b2 = d.__getitems__(keys), d.__getitems__(list(reversed(keys)))
    for k in b1:
        assert torch.equal(b1[k], b2[k].flip(0)), k
    b3 = d.__getitems__([(i, 3, i) for i in range(len(d))])
    assert not torch.equal(b1["regions"], b3["regions"])  # another epoch draws differently
    assert (b1["region_valid"].sum(1) >= 1).all()  # region drop keeps a visible region
    e = _dataset(ds)
    assert torch.equal(e.__getitems__([0, 1])["regions"], e.__getitems__([0, 1])["regions"])  # eval: no randomness


def test_flip_swaps_left_and_right(tmp_path: Path) -> None:
    regions = ("head", "left_hand", "right_hand", "torso")
    ds = make_random_dataset(tmp_path, splits={"train": 4}, regions=regions, invisible_prob=0.0)
    tax = load_taxonomy(ds["taxonomy"])
    samples = read_manifest_csv(ds["manifest"], tax, split="train")
    store = FeatureStore.open(ds["store"])
    plain = ClipDataset(store, samples, tax, num_steps=4, sampling="uniform")
    flip = ClipDataset(store, samples, tax, num_steps=4, sampling="uniform", flip_prob=1.0)
    flip.sampling = "uniform"
    a = plain.__getitems__([0])["regions"][0]
    b = flip.__getitems__([(0, 0, 0)])["regions"][0]
    assert torch.equal(b[1], a[2]) and torch.equal(b[2], a[1]) and torch.equal(b[0], a[0])


def test_train_sampler_order_resume_and_ddp_slices() -> None:
    s = TrainBatchSampler(50, 8, seed=3)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == 6 and all(len(b) == 8 for b in full)  # the incomplete last batch is dropped
    s.set_epoch(2)
    assert list(s) == full  # a pure function of (seed, epoch)
    s.set_epoch(2, start_batch=4)
    assert list(s) == full[4:]  # mid-epoch resume
    s.set_epoch(3)
    assert list(s) != full
    parts = []
    for rank in range(2):
        r = TrainBatchSampler(50, 8, seed=3, rank=rank, world=2)
        r.set_epoch(2)
        parts.append(list(r))
    assert [a + b for a, b in zip(*parts, strict=True)] == full  # the processes share each global batch
    with pytest.raises(ValueError, match="multiple"):
        TrainBatchSampler(50, 7, seed=0, world=2)
    w = class_weights(np.array([0, 0, 0, 1]), 2)
    assert np.allclose(w, [1 / 6, 1 / 6, 1 / 6, 1 / 2])
    bal = TrainBatchSampler(400, 400, seed=0, weights=class_weights(np.array([0] * 390 + [1] * 10), 2))
    drawn = [i for b in bal for i, _, _ in b]
    assert 120 < sum(i >= 390 for i in drawn) < 280  # the rare class is drawn about half the time
    ev = [i for r in range(3) for b in EvalBatchSampler(10, 3, rank=r, world=3) for i in b]
    assert ev == list(range(10))


def test_store_checks(ds: dict[str, Path]) -> None:
    store = FeatureStore.open(ds["store"])
    check_store(store, store.manifest.signature(), source="the run")
    check_store(store, {"region_dim": 16, "encoders": ["random"]}, source="the config")
    with pytest.raises(StoreMismatch, match=r"region_dim: the store has 16, expected 1408"):
        check_store(store, {"region_dim": 1408}, source="the config")
    with pytest.raises(StoreMismatch, match="unknown manifest field"):
        check_store(store, {"colour": 1}, source="the config")
    tax = load_taxonomy(ds["taxonomy"])
    samples = read_manifest_csv(ds["manifest"], tax)
    from microaction.data.readers.annotations import Sample

    extra = [*samples, Sample("videos/nope.mp4", 0)]
    with pytest.raises(StoreError, match="1 of 33 clips"):
        select_samples(store, extra)
    kept, missing = select_samples(store, extra, allow_missing=True)
    assert len(kept) == 32 and missing == ["videos__nope"]


def test_prefetch_thread_keeps_order_and_raises(ds: dict[str, Path]) -> None:
    from microaction.data.loader import make_loader

    d = _dataset(ds)
    s = TrainBatchSampler(len(d), 4, seed=0)
    s.set_epoch(1)
    threaded = [b["index"].tolist() for b in make_loader(d, s, workers=0)]
    inline = [b["index"].tolist() for b in make_loader(d, s, workers=0, prefetch=0)]
    assert threaded == inline == [[i for i, _, _ in b] for b in s]
    d.keys[5] = "no_such_clip"
    with pytest.raises(StoreError, match="no_such_clip"):
        for _ in make_loader(d, EvalBatchSampler(len(d), 4)):
            pass


@pytest.fixture(scope="module")
def sv_ds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loader_steps")
    return make_random_dataset(root, splits={"train": 12}, lengths=(3, 30), seed=2, step_valid=True)


def _step_of(store_global: np.ndarray, step_global: torch.Tensor) -> int:
    """Index of the store step whose global features are these (float16 in the store: exact)."""
    hit = np.flatnonzero((store_global.astype(np.float32) == step_global.numpy()).all(1))
    assert len(hit) == 1
    return int(hit[0])


def test_region_valid_steps_follow_the_sampled_steps(sv_ds: dict[str, Path], tmp_path: Path) -> None:
    store = FeatureStore.open(sv_ds["store"])
    d = _dataset(sv_ds, store, sampling="jitter")
    assert d.step_valid
    for keys in (list(range(len(d))), [(i, 1, i) for i in range(len(d))]):  # uniform, then jittered steps
        b = d.__getitems__(keys)
        steps = b["region_valid_steps"]
        assert steps.shape == (len(d), 4, 8) and steps.dtype == torch.bool
        for j in range(len(d)):
            item = store.read(d.keys[j])
            n = int(b["mask"][j].sum())
            assert not steps[j, :, n:].any()  # padded steps are False
            for t in range(n):
                s = _step_of(item.global_, b["global"][j, t])
                want = item.extras["step_valid"][:, s] & item.region_valid
                assert steps[j, :, t].tolist() == want.tolist()
    # packed: the same batches, with the packed array and (stores packed before it) from the items
    shutil.copytree(sv_ds["store"], tmp_path / "store")
    packed = FeatureStore.open(tmp_path / "store")
    packed.pack()
    keys = [(i, 3, 10 + i) for i in range(len(d))]
    want = d.__getitems__(keys)
    for drop_array in (False, True):
        if drop_array:  # a pack made before step_valid.npy (and pack.json) existed
            (tmp_path / "store" / "packed" / "step_valid.npy").unlink()
            (tmp_path / "store" / "packed" / "pack.json").unlink()
        p = _dataset(sv_ds, FeatureStore.open(tmp_path / "store"), sampling="jitter")
        got = p.__getitems__(keys)
        assert p._packed_index() is not None and (p._packed_index().step_valid is None) == drop_array  # type: ignore[union-attr]
        for k in want:
            assert torch.equal(want[k], got[k]), (k, drop_array)


def test_region_valid_steps_absent_for_older_stores(ds: dict[str, Path]) -> None:
    assert "region_valid_steps" not in _dataset(ds).__getitems__([0, 1])


def test_region_valid_steps_flip_and_drop(tmp_path: Path) -> None:
    regions = ("head", "left_hand", "right_hand", "torso")
    ds = make_random_dataset(tmp_path, splits={"train": 6}, regions=regions, invisible_prob=0.0, step_valid=True)
    tax = load_taxonomy(ds["taxonomy"])
    samples = read_manifest_csv(ds["manifest"], tax, split="train")
    store = FeatureStore.open(ds["store"])
    plain = ClipDataset(store, samples, tax, num_steps=4, sampling="uniform")
    flip = ClipDataset(store, samples, tax, num_steps=4, sampling="uniform", flip_prob=1.0)
    for i in range(6):
        a = plain.__getitems__([i])["region_valid_steps"][0]
        b = flip.__getitems__([(i, 0, 0)])["region_valid_steps"][0]
        assert torch.equal(b[1], a[2]) and torch.equal(b[2], a[1]) and torch.equal(b[0], a[0]), i
    drop = ClipDataset(store, samples, tax, num_steps=4, sampling="uniform", region_drop_prob=0.5)
    b = drop.__getitems__([(i, 0, i) for i in range(6)])
    assert not b["region_valid"].all()  # some region was dropped ...
    assert not b["region_valid_steps"][~b["region_valid"]].any()  # ... and is seen at no step


def test_region_valid_steps_of_a_bad_item(sv_ds: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(sv_ds["store"], tmp_path / "store")
    store = FeatureStore.open(tmp_path / "store")
    key = store.keys()[0]
    it = store.read(key)
    store.write(
        key,
        regions=it.regions,
        global_=it.global_,
        region_valid=it.region_valid,
        timestamps=it.timestamps,
        extras={**it.extras, "step_valid": it.extras["step_valid"][:, :-1]},
    )
    d = _dataset(sv_ds, store)
    with pytest.raises(StoreError, match=f"{key}.*step_valid"):
        d.__getitems__([d.keys.index(key)])
    with pytest.raises(StoreError, match="step_valid"):
        store.pack()


def test_feature_stats_count_only_the_steps_a_region_is_seen(sv_ds: dict[str, Path]) -> None:
    from microaction.data.standardize import compute_feature_stats

    fs = FeatureStore.open(sv_ds["store"])
    keys = store_keys(fs)
    items = [fs.read(k) for k in keys]
    assert any(not it.extras["step_valid"][it.region_valid].all() for it in items)  # some unseen steps
    r = 0
    seen = np.concatenate([it.regions[r][it.extras["step_valid"][r]] for it in items if it.region_valid[r]])
    stats = compute_feature_stats(fs, keys)
    np.testing.assert_allclose(stats.region_mean[r], seen.astype(np.float64).mean(0), atol=1e-5)
    np.testing.assert_allclose(stats.region_std[r], seen.astype(np.float64).std(0), atol=1e-4)
