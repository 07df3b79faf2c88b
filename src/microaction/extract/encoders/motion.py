"""``motion``: dense-trajectory-style descriptors of each region clip, CPU only, no weights.

Per frame of a stream's square crop (``size``², masked): dense optical flow from the previous
frame (OpenCV DIS, or Farneback), then on a 2×2 spatial grid of cells

- HOF: flow-orientation histogram (8 bins, magnitude-weighted) + a no-motion bin, per cell;
- MBH: histograms (8 bins) of the spatial gradients of the flow's x and y components, per cell;
- HOG: unsigned gradient-orientation histogram (9 bins) of the masked crop, per cell, L2-normed;
- energy: mean flow magnitude per cell, mean and spread of the flow's x and y.

Flow is in crop pixels per 1/30 s (fps-independent); HOF/MBH are per-pixel densities (so the
amount of motion survives normalisation, which subtle micro-actions need), square-rooted.
Per-frame descriptors are averaged over windows of ``window`` frames every ``stride`` frames.
``DIM`` = 4·9 + 2·4·8 + 4·9 + 8 = 144.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from microaction.extract.encoders.base import Encoded, Encoder, EncoderInput, pool, window_times, windows
from microaction.extract.regions import GLOBAL

__all__ = ["DIM", "MotionEncoder", "frame_descriptors"]

CELLS = 2
HOF_BINS = 8
MBH_BINS = 8
HOG_BINS = 9
DIM = CELLS * CELLS * (HOF_BINS + 1) + 2 * CELLS * CELLS * MBH_BINS + CELLS * CELLS * HOG_BINS + CELLS * CELLS + 4
STATIC = 0.1  # px per 1/30 s below which a pixel counts as not moving


def _cell_index(size: int) -> np.ndarray:
    c = (np.arange(size) * CELLS) // size
    return (c[:, None] * CELLS + c[None, :]).reshape(-1)  # [S*S]


def _hist(mag: np.ndarray, ang: np.ndarray, bins: int, period: float, cells: np.ndarray) -> np.ndarray:
    """Magnitude-weighted orientation histograms per cell: mag/ang ``[T, S*S]`` -> ``[T, C, bins]``."""
    T, N = mag.shape
    C = CELLS * CELLS
    b = np.minimum((ang * (bins / period)).astype(np.int64), bins - 1)
    idx = (np.arange(T)[:, None] * C + cells[None, :]) * bins + b
    h = np.bincount(idx.reshape(-1), weights=mag.reshape(-1), minlength=T * C * bins)
    return h.reshape(T, C, bins) / (N / C)


def frame_descriptors(clip: np.ndarray, dt: np.ndarray, flow: str = "dis") -> np.ndarray:
    """``[T, S, S, 3]`` uint8 clip, ``[T]`` seconds since the previous frame -> ``[T, DIM]``."""
    T, S = clip.shape[0], clip.shape[1]
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip])
    flows = np.zeros((T, S, S, 2), dtype=np.float32)
    if flow == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)  # type: ignore[attr-defined]
        for t in range(1, T):
            flows[t] = dis.calc(gray[t - 1], gray[t], None)
    elif flow == "farneback":
        for t in range(1, T):
            flows[t] = cv2.calcOpticalFlowFarneback(gray[t - 1], gray[t], None, 0.5, 2, 9, 2, 5, 1.1, 0)  # type: ignore[call-overload]
    else:
        raise ValueError(f"unknown flow method {flow!r} (dis, farneback)")
    if T > 1:
        flows[0] = flows[1]
        per30 = 1.0 / np.maximum(dt * 30.0, 1e-3)
        per30[0] = per30[1] if T > 1 else 1.0
        flows *= per30[:, None, None, None].astype(np.float32)
    cells = _cell_index(S)
    C = CELLS * CELLS
    fx, fy = flows[..., 0].reshape(T, -1), flows[..., 1].reshape(T, -1)
    mag, ang = cv2.cartToPolar(fx, fy)
    hof = _hist(mag, ang, HOF_BINS, 2 * np.pi, cells)
    static = (mag < STATIC).astype(np.float32)
    idx = np.arange(T)[:, None] * C + cells[None, :]
    static_frac = np.bincount(idx.reshape(-1), weights=static.reshape(-1), minlength=T * C).reshape(T, C, 1) / (
        S * S / C
    )
    hof = np.concatenate([np.sqrt(hof), static_frac], -1).reshape(T, -1)
    mbh = []
    for comp in (flows[..., 0], flows[..., 1]):
        gx = np.stack([cv2.Sobel(c, cv2.CV_32F, 1, 0, ksize=1) for c in comp]).reshape(T, -1)
        gy = np.stack([cv2.Sobel(c, cv2.CV_32F, 0, 1, ksize=1) for c in comp]).reshape(T, -1)
        m, a = cv2.cartToPolar(gx, gy)
        mbh.append(np.sqrt(_hist(m, a, MBH_BINS, 2 * np.pi, cells)).reshape(T, -1))
    g = gray.astype(np.float32)
    gx = np.stack([cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=1) for x in g]).reshape(T, -1)
    gy = np.stack([cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=1) for x in g]).reshape(T, -1)
    m, a = cv2.cartToPolar(gx, gy)
    hog = _hist(m, np.mod(a, np.pi), HOG_BINS, np.pi, cells)
    hog = (hog / (np.linalg.norm(hog, axis=-1, keepdims=True) + 1e-6)).reshape(T, -1)
    cell_mag = np.bincount(idx.reshape(-1), weights=mag.reshape(-1), minlength=T * C).reshape(T, C) / (S * S / C)
    energy = np.concatenate(
        [
            np.log1p(cell_mag),
            np.sign(fx.mean(1, keepdims=True)) * np.sqrt(np.abs(fx.mean(1, keepdims=True))),
            np.sign(fy.mean(1, keepdims=True)) * np.sqrt(np.abs(fy.mean(1, keepdims=True))),
            np.log1p(fx.std(1, keepdims=True)),
            np.log1p(fy.std(1, keepdims=True)),
        ],
        -1,
    )
    out = np.concatenate([hof, *mbh, hog, energy], -1).astype(np.float32)
    assert out.shape[1] == DIM
    return out


class MotionEncoder(Encoder):
    name = "motion"

    def __init__(self, size: int = 64, window: int = 4, stride: int = 2, flow: str = "dis") -> None:
        if flow not in ("dis", "farneback"):
            raise ValueError(f"unknown flow method {flow!r} (dis, farneback)")
        self.input_size = int(size)
        self.window = int(window)
        self.stride = int(stride)
        self.flow = flow
        cv2.setNumThreads(1)

    def dims(self, regions: tuple[str, ...]) -> tuple[int, int]:
        return DIM, DIM

    def encode(self, inp: EncoderInput) -> Encoded:
        clips = inp.clips[self.input_size]  # type: ignore[index]
        ts = inp.timestamps.astype(np.float64)
        dt = np.diff(ts, prepend=ts[0] - (ts[1] - ts[0] if len(ts) > 1 else 1 / 30))
        grid = windows(len(ts), self.window, self.stride, tail=not inp.partial)
        regions = np.stack([pool(frame_descriptors(clips[r], dt, self.flow), grid) for r in inp.layout.regions])
        glob = pool(frame_descriptors(clips[GLOBAL], dt, self.flow), grid)
        return Encoded(regions, glob, window_times(inp.timestamps, grid))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "flow": self.flow, "cells": CELLS}
