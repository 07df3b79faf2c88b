"""Small random datasets for tests, examples and the loading benchmark.

``make_random_dataset(root, ...)`` writes a feature store whose features carry a learnable class
signal (each class adds a fixed random pattern to the region stream of its body group and, more
weakly, to the global stream), a manifest CSV with a ``split`` column, and a small label set YAML.
``make_packed_store(root, n, ...)`` writes a large store directly in packed form (random
features, no per-clip files) for the loading benchmark.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from microaction.data.store import DEFAULT_REGIONS, FeatureStore, StoreManifest, atomic_write_bytes, video_key

__all__ = ["make_packed_store", "make_random_dataset", "random_manifest", "write_tiny_taxonomy"]


def write_tiny_taxonomy(
    path: Path, num_classes: int = 6, num_body: int = 3, regions: tuple[str, ...] = DEFAULT_REGIONS
) -> Path:
    """A label set YAML with ``num_classes`` classes spread over ``num_body`` body groups."""
    body_names = [f"group{b}" for b in range(num_body)]
    doc = {
        "name": "tiny",
        "body_names": body_names,
        "body_regions": {body_names[b]: [regions[b % len(regions)]] for b in range(num_body)},
        "classes": [
            {"id": c, "name": f"class{c}", "body": c % num_body, "train_count": 10 + c} for c in range(num_classes)
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def random_manifest(
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    region_dim: int = 16,
    global_dim: int = 16,
    face_size: int = 0,
    step_valid: bool = False,
) -> StoreManifest:
    params: dict[str, Any] = {"generator": "microaction.engine.testing"}
    if face_size:
        params["extract"] = {"face_size": face_size}  # what the loader reads to find face crops
    if step_valid:
        params["extras"] = {"step_valid": "[R, T] bool"}  # what the loader reads to find per-step validity
    return StoreManifest(
        regions=list(regions),
        region_dim=region_dim,
        global_dim=global_dim,
        parser="random",
        encoders=[{"name": "random", "dim": region_dim, "window": 1, "stride": 1}],
        fps=30.0,
        params=params,
        tool_version="test",
    )


def make_random_dataset(
    root: str | Path,
    *,
    num_classes: int = 6,
    num_body: int = 3,
    splits: dict[str, int] | None = None,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    region_dim: int = 16,
    global_dim: int = 16,
    lengths: tuple[int, int] = (5, 20),
    signal: float = 1.5,
    invisible_prob: float = 0.1,
    seed: int = 0,
    pack: bool = False,
    hidden: tuple[str, ...] = (),
    face_size: int = 0,
    step_valid: bool = False,
) -> dict[str, Any]:
    """Write ``root/store``, ``root/manifest.csv`` and ``root/taxonomy.yaml``; returns their paths.

    ``splits`` maps split name -> clip count (default train 96, val 48, test 24). Labels cycle
    through the classes, so every class is present in every split large enough. Splits named in
    ``hidden`` get empty labels in the manifest (like a benchmark's hidden test labels).
    ``face_size`` > 0 adds head-box face crops as the extraction writes them (extras ``face``
    [L, S, S] uint8: noise whose first pixel is the step index, and ``face_valid`` [L], about 90 %
    true), so tests can check which step a crop came from. ``step_valid`` adds per-step region
    validity as the extraction writes it (extra ``step_valid`` [R, L]: about 70 % true, false where
    the region is invalid for the clip, its first step true for a valid region).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    splits = splits or {"train": 96, "val": 48, "test": 24}
    rng = np.random.default_rng(seed)
    tax_path = write_tiny_taxonomy(root / "taxonomy.yaml", num_classes, num_body, regions)
    R = len(regions)
    pattern = rng.standard_normal((num_classes, region_dim)).astype(np.float32)
    gpattern = rng.standard_normal((num_classes, global_dim)).astype(np.float32)
    manifest = random_manifest(regions, region_dim, global_dim, face_size, step_valid)
    store = FeatureStore.create(root / "store", manifest)
    rows = []
    for k, (split, n) in enumerate(splits.items()):
        for i in range(n):
            label = (i + k) % num_classes
            body = label % num_body
            L = int(rng.integers(lengths[0], lengths[1] + 1))
            reg = rng.standard_normal((R, L, region_dim)).astype(np.float32)
            glo = rng.standard_normal((L, global_dim)).astype(np.float32)
            ramp = np.sin(np.linspace(0, np.pi, L, dtype=np.float32))[:, None]  # the motion happens mid-clip
            reg[body % R] += signal * ramp * pattern[label]
            glo += 0.5 * signal * ramp * gpattern[label]
            valid = rng.random(R) >= invisible_prob
            valid[body % R] = True
            video = f"videos/{split}_{i:04d}.mp4"
            key = video_key(video)
            boxes = np.tile(np.array([[10.0, 10.0, 50.0, 60.0]], dtype=np.float32), (R + 1, 1))
            extras: dict[str, np.ndarray] = {"boxes": boxes}
            if face_size:
                face = rng.integers(0, 256, (L, face_size, face_size), dtype=np.uint8)
                face[:, 0, 0] = np.arange(L) % 256
                extras.update(face=face, face_valid=rng.random(L) < 0.9)
            if step_valid:
                steps = (rng.random((R, L)) < 0.7) & valid[:, None]
                steps[:, 0] = valid
                extras["step_valid"] = steps
            store.write(
                key,
                regions=reg,
                global_=glo,
                region_valid=valid,
                timestamps=np.arange(L, dtype=np.float32) / 30.0,
                extras=extras,
            )
            rows.append((video, label, body, split) if split not in hidden else (video, "", "", split))
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video", "label", "body", "split"])
        w.writerows(rows)
    if pack:
        store.pack()
    return {"store": root / "store", "manifest": root / "manifest.csv", "taxonomy": tax_path}


def make_packed_store(
    root: str | Path,
    num_clips: int,
    *,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    region_dim: int = 256,
    global_dim: int = 256,
    lengths: tuple[int, int] = (12, 24),
    seed: int = 0,
    chunk: int = 512,
) -> list[str]:
    """A store of ``num_clips`` random clips written straight into ``packed/`` (the layout of
    ``FeatureStore.pack``), fast enough for MA-52-sized stores. Returns the keys."""
    root = Path(root)
    manifest = random_manifest(regions, region_dim, global_dim)
    (root / "packed").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "manifest.json", json.dumps(manifest.to_dict(), indent=2).encode())
    rng = np.random.default_rng(seed)
    lens = rng.integers(lengths[0], lengths[1] + 1, size=num_clips)
    offsets = np.zeros(num_clips + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lens)
    total = int(offsets[-1])
    R = len(regions)
    p = root / "packed"
    reg = np.lib.format.open_memmap(p / "regions.npy", "w+", np.float16, (total, R, region_dim))
    glo = np.lib.format.open_memmap(p / "global.npy", "w+", np.float16, (total, global_dim))
    ts = np.lib.format.open_memmap(p / "timestamps.npy", "w+", np.float32, (total,))
    for a in range(0, total, chunk * 16):
        b = min(total, a + chunk * 16)
        reg[a:b] = rng.standard_normal((b - a, R, region_dim), dtype=np.float32).astype(np.float16)
        glo[a:b] = rng.standard_normal((b - a, global_dim), dtype=np.float32).astype(np.float16)
        ts[a:b] = 0.0
    for arr in (reg, glo, ts):
        arr.flush()
    del reg, glo, ts
    keys = [f"clip{i:06d}" for i in range(num_clips)]
    np.save(p / "offsets.npy", offsets)
    np.save(p / "region_valid.npy", np.ones((num_clips, R), dtype=bool))
    (p / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
    return keys
