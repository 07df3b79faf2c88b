"""``crop_clips`` frees a chunk's frames as soon as it returns (long recordings stream in chunks)."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from microaction.extract.parsers.base import ParseResult
from microaction.extract.regions import GLOBAL, crop_clips, region_layout


def test_crops_leave_no_reference_cycle_holding_the_frames() -> None:
    rng = np.random.default_rng(0)
    T, H, W = 4, 256, 256
    kp = np.zeros((T, 33, 3), np.float32)
    kp[..., 0] = rng.uniform(40, 216, (T, 33))
    kp[..., 1] = rng.uniform(20, 236, (T, 33))
    kp[..., 2] = 1.0
    parse = ParseResult(kp, (H, W), None)
    layout = region_layout(parse, ("head", "body", "upper_limbs", "lower_limbs"))
    frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    alive = weakref.ref(frames)
    was_enabled = gc.isenabled()
    gc.disable()  # only reference counting: a cycle would keep the frames
    try:
        clips = crop_clips(frames, parse, layout, 16)  # big boxes, 16-pixel crops: the pyramid is used
        del frames
        assert alive() is None, "crop_clips left the frames in a reference cycle"
    finally:
        if was_enabled:
            gc.enable()
    assert set(clips) == {"head", "body", "upper_limbs", "lower_limbs", GLOBAL}
    assert all(c.shape == (T, 16, 16, 3) for c in clips.values())
