"""A trained detector over a stream: a sliding window with a fixed look-ahead.

The detector (any ``task: detection`` run: ``tridet``, ``bmoe_tridet``, ``sliding_window``) runs,
after each new feature step (the session's hop), on the last ``window`` seconds (64: offline it
sees the whole recording, and twice the demo's 32-second training windows came closest to it on
the benchmark; the whole past would cost more with every step), as ``mar timeline`` runs it on a
whole recording (``engine.detection.detect_recording``, the run's standardisation). The steps
seen so far end at the *horizon*; a detection is final once the horizon is ``lookahead`` seconds
past its end: the detector then saw that much of what followed the action, so its end is not
cut by the edge of what has arrived. ``Finaliser`` picks a run's events: the detections whose
end lies between the previous run's cut (``horizon - lookahead``) and its own, or up to
``reopen`` seconds before it (an end that moved back across the cut between two runs), scoring
at least ``min_score`` once decayed by the events already emitted, and not repeating one (same
class, tIoU >= ``dedup_iou``). When the source ends, the last run finalises everything (no more
look-ahead can come).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
from torch import nn

from microaction.data.readers.segments import Detection
from microaction.data.standardize import FeatureStats
from microaction.engine.detection import DetectionRecording, detect_recording, standardize_recording
from microaction.live.features import Steps
from microaction.models.detect_ops import NMS_BLOCK

__all__ = ["Finaliser", "LiveDetector", "WindowSettings"]


@dataclass
class WindowSettings:
    window: float | None = 64.0  # seconds of features the detector sees (None: its training window)
    lookahead: float = 0.25  # seconds past an action's end before it is final
    min_score: float = 0.1
    dedup_iou: float = 0.5
    min_interval: float = 0.0  # seconds between two runs at least (0: after every batch of steps)
    rank: bool = True  # only a window's best, as many as the detector keeps offline per window length
    # seconds before the cut a candidate may still end and be emitted late (one whose end moved back
    # across the cut between two runs): events already emitted suppress its repeats
    reopen: float = 1.0


@dataclass
class _Held:
    regions: deque[np.ndarray] = field(default_factory=deque)  # [R, D] per step, standardised
    global_: deque[np.ndarray] = field(default_factory=deque)
    valid: deque[np.ndarray] = field(default_factory=deque)  # [R]
    times: deque[float] = field(default_factory=deque)


class LiveDetector:
    """Feature steps in (``add``), final detections out (``poll``)."""

    def __init__(
        self,
        model: nn.Module,
        video: str,
        rate: float,
        settings: WindowSettings,
        *,
        stats: FeatureStats | None = None,
        min_visible_fraction: float = 0.2,
        device: str = "cpu",
        person: str | None = None,
        window_steps: int = 192,
    ) -> None:
        self.model, self.video, self.rate, self.s = model, video, float(rate), settings
        self.person = person
        self.stats, self.min_visible, self.device = stats, float(min_visible_fraction), device
        self.size = max(2, round(settings.window * self.rate)) if settings.window else int(window_steps)
        self.held = _Held()
        self.horizon = -np.inf  # seconds of stream the features cover
        self.ran_at = -np.inf  # the horizon of the last run
        self.pending = False
        self.final = self.finaliser(settings)
        self.runs = 0
        self.seconds = 0.0  # spent in the detector
        self.last_run = 0.0

    def finaliser(self, settings: WindowSettings) -> Finaliser:
        """What picks this detector's events under ``settings`` (its look-ahead, ``rank``); one
        detector's runs can feed several (``run`` then ``Finaliser.take``)."""
        test = getattr(self.model, "test", None)  # TriDet's post-processing settings, where the model has them
        sigma = float(getattr(test, "nms_sigma", 0.5))
        top = getattr(test, "max_seg_num", None)
        k = max(1, math.ceil(top * self.size / NMS_BLOCK)) if top and settings.rank else None
        return Finaliser(settings, self.size / self.rate, sigma, k, self.person)

    def add(self, steps: Steps) -> None:
        n = len(steps.times)
        if not n:
            return
        rec = DetectionRecording(self.video, "live", steps.regions.astype(np.float32), steps.global_.astype(np.float32),
                        steps.valid, 0.0, 1.0 / self.rate, np.zeros((0, 2)), np.zeros(0, np.int64))  # fmt: skip
        if self.stats is not None:
            standardize_recording(rec, self.stats, where="live features")
        h = self.held
        for j in range(n):
            h.regions.append(rec.regions[:, j])
            h.global_.append(rec.global_[j])
            h.valid.append(steps.valid[:, j])
            h.times.append(float(steps.times[j]))
        while len(h.times) > self.size:
            h.regions.popleft()
            h.global_.popleft()
            h.valid.popleft()
            h.times.popleft()
        self.horizon = float(steps.times[-1]) + 0.5 / self.rate
        self.pending = True

    def warm_up(self, regions: int, region_dim: int, global_dim: int) -> None:
        """One forward pass on a window of zeros (allocations, kernels chosen) before frames come."""
        n = self.size
        rec = DetectionRecording(self.video, "warm-up", np.zeros((regions, n, region_dim), np.float32),
                        np.zeros((n, global_dim), np.float32), np.ones(regions, bool), 0.0, 1.0 / self.rate,
                        np.zeros((0, 2)), np.zeros(0, np.int64))  # fmt: skip
        detect_recording(self.model, rec, self.device)

    def poll(self, final: bool = False) -> list[Detection]:
        """Run the detector when new steps came (and ``min_interval`` passed); the new final events."""
        if len(self.held.times) < 2 or (final and self.final.cut >= self.horizon):
            return []
        now = time.monotonic()
        if not final and (not self.pending or now - self.last_run < self.s.min_interval):
            return []
        if not final and self.horizon - self.s.lookahead <= self.final.cut:
            return []
        dets = self.run()
        self.last_run = now
        return self.final.take(dets, self.horizon, final)

    def run(self) -> list[Detection]:
        """The detector on the window held now (its candidates, best first)."""
        t0 = time.perf_counter()
        dets = detect_recording(self.model, self._recording(), self.device)
        self.seconds += time.perf_counter() - t0
        self.runs += 1
        self.pending, self.ran_at = False, self.horizon
        return dets

    def _recording(self) -> DetectionRecording:
        h = self.held
        regions = np.stack(list(h.regions), axis=1)  # [R, T, D]
        glob = np.stack(list(h.global_))
        valid = np.stack(list(h.valid), axis=1)  # [R, T]
        summary = valid.mean(1) >= self.min_visible  # as a recording's region_valid: seen often enough
        t0 = h.times[0]
        return DetectionRecording(self.video, "live", regions, glob, summary, t0, 1.0 / self.rate,
                         np.zeros((0, 2)), np.zeros(0, np.int64))  # fmt: skip


class Finaliser:
    """Which of a run's candidates become events: those ending between the previous run's cut and
    this one's (``horizon - lookahead``; at the end, everything), scoring at least ``min_score``
    once decayed by the events already emitted, and not one of them seen again."""

    def __init__(
        self, settings: WindowSettings, span: float, sigma: float, top: int | None, person: str | None
    ) -> None:
        self.s, self.span, self.sigma, self.top, self.person = settings, span, sigma, top, person
        self.cut = -np.inf  # seconds finalised so far
        self.emitted: deque[Detection] = deque()  # recent events, for de-duplication

    def take(self, dets: list[Detection], horizon: float, final: bool = False) -> list[Detection]:
        cut = horizon if final else horizon - self.s.lookahead
        lo, self.cut = self.cut, max(cut, self.cut)
        # as many per window as the detector keeps offline per stretch of recording (its
        # max_seg_num per NMS_BLOCK steps): a candidate must rank among the window's best that many
        bar = -math.inf
        if self.top is not None and len(dets) > self.top:
            bar = sorted((d.score for d in dets), reverse=True)[self.top - 1]
        out = []
        lo = min(lo, cut - self.s.reopen)
        for d in self._decayed([d for d in dets if lo < d.end <= cut + 1e-6 and d.score >= bar]):
            if d.score < self.s.min_score:
                continue
            if any(e.label == d.label and _tiou(e, d) >= self.s.dedup_iou for e in self.emitted):
                continue
            d = replace(d, person=self.person)
            self.emitted.append(d)
            out.append(d)
        while self.emitted and self.emitted[0].end < self.cut - self.span:
            self.emitted.popleft()  # older than any window can reach again
        return sorted(out, key=lambda d: (d.end, -d.score))

    def _decayed(self, dets: list[Detection]) -> list[Detection]:
        """Candidates best first, each score decayed by the events already emitted as the
        detector's Gaussian Soft-NMS would have decayed it below them (same class:
        ``exp(-tIoU² / sigma)``): an event is final and cannot be taken back."""
        out = []
        for d in dets:
            k = 1.0
            for e in self.emitted:
                if e.label == d.label:
                    k *= math.exp(-(_tiou(e, d) ** 2) / self.sigma)
            out.append(replace(d, score=d.score * k) if k < 1.0 else d)
        return sorted(out, key=lambda d: -d.score)


def _tiou(a: Detection, b: Detection) -> float:
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = max(a.end, b.end) - min(a.start, b.start)
    return inter / union if union > 0 else 0.0
