"""The feature store: atomic commit records, idempotent writes, packing, extras, keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microaction.data.store import FeatureStore, StoreError, StoreManifest, StoreMismatch, atomic_write_bytes, video_key


def _manifest(**kw) -> StoreManifest:
    base = dict(regions=["head", "body"], region_dim=3, global_dim=2, parser="groundtruth",
                encoders=[{"name": "pose", "dim": 3, "window": 1, "stride": 1}], params={"extract": {"stride": 1}})  # fmt: skip
    return StoreManifest(**{**base, **kw})


def _write(store: FeatureStore, key: str, T: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store.write(
        key,
        regions=rng.normal(size=(2, T, 3)),
        global_=rng.normal(size=(T, 2)),
        region_valid=np.array([True, False]),
        timestamps=np.arange(T) / 30.0,
        extras={"boxes": rng.uniform(0, 100, (3, 4)).astype(np.float32)},
    )


def test_write_read_pack(tmp_path: Path) -> None:
    s = FeatureStore.create(tmp_path / "s", _manifest())
    _write(s, "a", 5, 0)
    _write(s, "b", 3, 1)
    s.write_failure("c", "VideoError: broken")
    assert s.keys() == ["a", "b"] and len(s) == 2 and "a" in s and "c" not in s
    assert s.failures() == {"c": "VideoError: broken"}
    a = s.read("a")
    assert a.regions.dtype == np.float16 and a.regions.shape == (2, 5, 3) and a.length == 5
    assert a.extras["boxes"].shape == (3, 4)
    s.pack()
    s2 = FeatureStore.open(tmp_path / "s")
    for k in ("a", "b"):
        x, y = s.read(k), s2.read(k)
        np.testing.assert_array_equal(x.regions, y.regions)
        np.testing.assert_array_equal(x.global_, y.global_)
        np.testing.assert_array_equal(x.extras["boxes"], y.extras["boxes"])  # extras survive packing
    assert (tmp_path / "s" / "packed" / "regions.npy").is_file()


def test_commit_record_and_reopen(tmp_path: Path) -> None:
    s = FeatureStore.create(tmp_path / "s", _manifest())
    _write(s, "a", 4, 0)
    (tmp_path / "s" / "status" / "a.json").unlink()  # killed between the item and its status
    assert not s.is_done("a") and s.keys() == []
    with pytest.raises(StoreError):
        s.read("a")
    # leftovers of a killed atomic write are ignored
    (tmp_path / "s" / "items" / ".x.npz.123.tmp").write_bytes(b"partial")
    assert FeatureStore.create(tmp_path / "s", _manifest()).keys() == []
    with pytest.raises(StoreMismatch, match="region_dim"):
        FeatureStore.create(tmp_path / "s", _manifest(region_dim=4))
    with pytest.raises(StoreError, match="not a feature store"):
        FeatureStore.open(tmp_path)


def test_write_checks_shapes(tmp_path: Path) -> None:
    s = FeatureStore.create(tmp_path / "s", _manifest())
    with pytest.raises(StoreError):
        s.write(
            "x",
            regions=np.zeros((3, 2, 3)),
            global_=np.zeros((2, 2)),
            region_valid=np.ones(3, bool),
            timestamps=np.zeros(2),
        )
    with pytest.raises(StoreError, match="non-finite"):
        s.write(
            "x",
            regions=np.full((2, 2, 3), np.nan),
            global_=np.zeros((2, 2)),
            region_valid=np.ones(2, bool),
            timestamps=np.zeros(2),
        )


def test_atomic_write_and_keys(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two" and [x.name for x in tmp_path.iterdir()] == ["f.bin"]
    assert video_key("videos_train/0001_05_0003.mp4") == "videos_train__0001_05_0003"
    assert video_key("a b/c.gif", 10, 20) == "a_b__c@10-20"
    with pytest.raises(StoreError):
        video_key("")
