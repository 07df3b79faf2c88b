"""A generated face-like dataset whose classes differ only in fine texture, with a nuisance group.

Every image is a smooth face-like drawing (grey, ``size`` × ``size``): a gradient background, a
head ellipse with random position / size / tilt / skin tone / shading, dark eyes, brows and
mouth. None of that depends on the class. The class is carried only by a *fine texture* on
the skin: white noise smeared along a short line (``texture_length`` pixels) at the class angle
(``180° · c / num_classes``: 0°, 45°, 90°, 135° for 4 classes), scaled to ``texture_amplitude``
grey levels, random phase in every image. A pixel template cannot find it (the class-mean
images are alike); local texture statistics (edge directions) can.

The nuisance attribute ``group`` changes the capture, not the face: group ``"B"`` images get
``contrast ×minority_contrast`` and ``brightness +minority_brightness`` (darker, flatter:
the texture shrinks with the contrast while the sensor noise, added afterwards, does not), and
group B is rare in training (``minority_fraction``) but half of the test split, so per-group
accuracy is measured on enough samples. Labels are balanced and independent of the group.

``generate_face_dataset(out, ...)`` writes ``images/<split>/<id>.png``, ``{train,val,test}.csv``
(``path,label,group``) and ``meta.json`` (parameters, class and group names); ``mar face synth``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SynthFaceConfig", "generate_face_dataset", "render_faces"]

GROUPS = ("A", "B")


@dataclass
class SynthFaceConfig:
    size: int = 64
    num_classes: int = 4
    n_train: int = 1000
    n_val: int = 600
    n_test: int = 1000
    minority_fraction: float = 0.15  # share of group B in train and val
    test_minority_fraction: float = 0.5  # share of group B in test
    texture_amplitude: float = 30.0  # std of the class texture, grey levels (before the group's contrast)
    texture_length: int = 9  # length of the line the texture noise is smeared along, pixels
    sensor_noise: float = 4.0  # std of isotropic pixel noise, grey levels (after the group's contrast)
    minority_contrast: float = 0.3
    minority_brightness: float = -50.0
    seed: int = 0


def _soft_ellipse(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float, edge: float = 1.2
) -> np.ndarray:
    ca, sa = np.cos(angle), np.sin(angle)
    u = (xx - cx) * ca + (yy - cy) * sa
    v = -(xx - cx) * sa + (yy - cy) * ca
    d = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    return 1.0 / (1.0 + np.exp(-(1.0 - d) * min(rx, ry) / edge))


def _oriented_noise(rng: np.random.Generator, size: int, angle_deg: float, length: int) -> np.ndarray:
    """Unit-variance white noise summed along a ``length``-pixel line at ``angle_deg``."""
    m = length
    noise = rng.standard_normal((size + 2 * m, size + 2 * m))
    th = np.deg2rad(angle_deg)
    out = np.zeros((size, size))
    for t in range(-(length // 2), length - length // 2):
        dy, dx = round(-t * np.sin(th)), round(t * np.cos(th))
        out += noise[m + dy : m + dy + size, m + dx : m + dx + size]
    return out / np.sqrt(length)


def render_faces(labels: np.ndarray, groups: np.ndarray, cfg: SynthFaceConfig, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[N, size, size]`` face-like images for class ``labels`` and group ids ``groups`` (0 = A, 1 = B)."""
    s = cfg.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    out = np.empty((len(labels), s, s), dtype=np.uint8)
    for i, (label, group) in enumerate(zip(labels, groups)):
        # background: a random linear gradient
        bg = rng.uniform(50, 120) + rng.uniform(-0.6, 0.6) * (xx - s / 2) + rng.uniform(-0.6, 0.6) * (yy - s / 2)
        cy, cx = s * 0.52 + rng.uniform(-3, 3), s * 0.5 + rng.uniform(-3, 3)
        ry, rx = s * rng.uniform(0.34, 0.40), s * rng.uniform(0.27, 0.32)
        tilt = np.deg2rad(rng.uniform(-12, 12))
        face = _soft_ellipse(yy, xx, cy, cx, ry, rx, tilt)
        skin = rng.uniform(140, 200) + rng.uniform(-0.8, 0.8) * (xx - cx) + rng.uniform(-0.5, 0.5) * (yy - cy)
        img = bg * (1 - face) + skin * face
        ca, sa = np.cos(tilt), np.sin(tilt)

        def at(
            du: float, dv: float, cy: float = cy, cx: float = cx, sa: float = sa, ca: float = ca
        ) -> tuple[float, float]:
            # a point of the face frame (du right, dv down) in image coordinates
            return cy + du * sa + dv * ca, cx + du * ca - dv * sa

        eye_dx, eye_dy = rx * rng.uniform(0.36, 0.44), -ry * rng.uniform(0.12, 0.22)
        dark = np.zeros_like(img)
        for side in (-1, 1):
            ey, ex = at(side * eye_dx, eye_dy)
            dark += rng.uniform(60, 90) * _soft_ellipse(yy, xx, ey, ex, s * 0.035, s * 0.06, tilt, edge=0.8)
            by, bx = at(side * eye_dx, eye_dy - s * 0.09)
            dark += rng.uniform(25, 45) * _soft_ellipse(yy, xx, by, bx, s * 0.02, s * 0.08, tilt, edge=0.8)
        my, mx = at(rng.uniform(-1.5, 1.5), ry * rng.uniform(0.45, 0.55))
        dark += rng.uniform(40, 70) * _soft_ellipse(
            yy, xx, my, mx, s * 0.03, s * rng.uniform(0.09, 0.13), tilt, edge=0.8
        )
        ny, nx = at(0, ry * 0.15)
        dark += rng.uniform(10, 25) * _soft_ellipse(yy, xx, ny, nx, s * 0.05, s * 0.025, tilt, edge=1.5)
        img = img - dark * face
        # the class: oriented fine texture on the skin only
        angle = 180.0 * int(label) / cfg.num_classes
        texture = cfg.texture_amplitude * _oriented_noise(rng, s, angle, cfg.texture_length)
        img = img + texture * face
        # the nuisance group: capture contrast / brightness, then sensor noise
        if group == 1:
            img = 128.0 + (img - 128.0) * cfg.minority_contrast + cfg.minority_brightness
        img = img + cfg.sensor_noise * rng.standard_normal(img.shape)
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def _split_labels(
    n: int, minority: float, cfg: SynthFaceConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % cfg.num_classes  # balanced classes
    n_b = round(n * minority)
    groups = np.zeros(n, dtype=np.int64)
    groups[:n_b] = 1
    # independent shuffles: group and label are independent
    return rng.permutation(labels), rng.permutation(groups)


def generate_face_dataset(out: str | Path, cfg: SynthFaceConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Write the dataset under ``out``; returns the meta dict also written to ``out/meta.json``."""
    cfg = cfg or SynthFaceConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise ValueError(f"unknown synthetic-face parameter {k!r}")
        setattr(cfg, k, type(getattr(cfg, k))(v))
    if cfg.num_classes < 2:
        raise ValueError("num_classes must be at least 2")
    out = Path(out)
    rng = np.random.default_rng(cfg.seed)
    counts: dict[str, dict[str, int]] = {}
    for split, n, minority in (
        ("train", cfg.n_train, cfg.minority_fraction),
        ("val", cfg.n_val, cfg.minority_fraction),
        ("test", cfg.n_test, cfg.test_minority_fraction),
    ):
        if n <= 0:
            continue
        labels, groups = _split_labels(n, minority, cfg, rng)
        images = render_faces(labels, groups, cfg, rng)
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        rows = []
        for i in range(n):
            rel = f"images/{split}/{i:05d}.png"
            Image.fromarray(images[i], mode="L").save(out / rel)
            rows.append((rel, int(labels[i]), GROUPS[int(groups[i])]))
        with (out / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "group"])
            w.writerows(rows)
        counts[split] = {g: int((groups == gi).sum()) for gi, g in enumerate(GROUPS)}
    meta = {
        "generator": "microaction.face.synthetic",
        "params": asdict(cfg),
        "class_names": [f"texture_{round(180 * c / cfg.num_classes)}deg" for c in range(cfg.num_classes)],
        "groups": {"A": "reference capture", "B": "darker, lower-contrast capture (rare in training)"},
        "group_counts": counts,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
