"""A frame-by-frame parser (a tracker: MediaPipe Pose) over a long video, in segments parsed side
by side in threads.

One tracker is sequential: each frame starts from the previous frame's landmarks, and MediaPipe's
graph keeps one core about 80 % busy. The video's time axis is therefore cut into segments of
``segment`` seconds (a fixed grid from the video's first frame); each segment is parsed by a fresh
tracker that starts ``WARMUP`` seconds before the segment (its detection and its smoothing filters
settle there; those frames' results are dropped). The result of a frame depends only on the frames
of its segment and the warm-up before it, not on the threads' timing, so

- ``workers`` trackers parse consecutive segments at once (MediaPipe releases the GIL), and the
  landmarks are the same for any number of workers;
- a resumed streamed extraction parses from the start of the segment it needs (``resume_from``)
  and gets the same landmarks as an uninterrupted one;
- a clip no longer than ``segment`` is parsed by one tracker from its first frame, as before.

Frames are yielded in decoding order; at most ``workers`` segments are in flight, so the frames
held do not grow with the video's length (about ``workers`` segments of them).
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from microaction.extract.parsers.base import ParseResult

__all__ = ["WARMUP", "Tracker", "as_tracker", "default_workers", "parse_segments", "resume_from"]

WARMUP = 1.0  # seconds a segment's tracker runs before the segment starts
_END = object()


class Tracker(Protocol):
    """A parser that parses frame by frame: ``session()`` gives a tracker with ``step(frame)``
    and ``close()``; ``finish`` makes a clip's ``ParseResult`` from the steps' results."""

    def session(self) -> Any: ...

    def finish(self, kps: list[np.ndarray], masks: list[np.ndarray], size: tuple[int, int]) -> ParseResult: ...


def as_tracker(parser: Any) -> Tracker | None:
    return parser if getattr(parser, "needs_pixels", False) and hasattr(parser, "session") else None


def default_workers() -> int:
    """Trackers run at once: two where there are two cores (more add memory, not speed, on the
    2-core machines this is measured on: decoding and encoding need the rest)."""
    return max(1, min(2, os.cpu_count() or 1))


def resume_from(t: float, segment: float) -> float:
    """The first time to parse so that the frames from ``t`` on get the landmarks of an
    uninterrupted run: the warm-up of the segment holding ``t``."""
    return max(0.0, math.floor(max(t, 0.0) / segment) * segment - WARMUP)


class _Segment:
    """One tracker thread: frames in (with a flag: keep its result), results out, in order."""

    def __init__(self, parser: Any, index: int) -> None:
        self.index = index
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.outbox: queue.Queue[Any] = queue.Queue()
        self.closed = False
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(parser,), name=f"track-{index}", daemon=True)
        self.thread.start()

    def _run(self, parser: Any) -> None:
        session = None
        try:
            session = parser.session()
            while (item := self.inbox.get()) is not _END and not self.cancelled.is_set():
                frame, keep = item
                out = session.step(frame)
                if keep:
                    self.outbox.put(out)
        except BaseException as e:  # handed to the consumer in place of the next result
            self.outbox.put(e)
        finally:
            if session is not None:
                session.close()

    def send(self, frame: np.ndarray, keep: bool) -> None:
        self.inbox.put((frame, keep))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inbox.put(_END)

    def cancel(self) -> None:
        self.cancelled.set()
        self.close()

    def result(self) -> Any:
        out = self.outbox.get()
        if isinstance(out, BaseException):
            raise out
        return out


def parse_segments(
    parser: Tracker,
    frames: Iterable[tuple[int, float, np.ndarray | None]],
    segment: float,
    workers: int | None = None,
) -> Iterator[tuple[int, float, np.ndarray | None, Any]]:
    """``(index, seconds, frame, session.step(frame))`` for every decoded ``(index, seconds,
    frame)``, in order. ``parser.session()`` makes a tracker with ``step`` and ``close``; a frame
    that is None (decoded, not converted: before a resume point) passes through with None."""
    if not segment > 0:
        raise ValueError(f"segment must be > 0 seconds, got {segment}")
    workers = workers or default_workers()
    live: dict[int, _Segment] = {}  # by segment index, oldest first
    pending: deque[tuple[int, float, np.ndarray | None, _Segment | None]] = deque()

    def emit(item):
        i, t, f, seg = item
        return i, t, f, (seg.result() if seg is not None else None)

    def ready() -> bool:
        seg = pending[0][3]
        return seg is None or not seg.outbox.empty()

    try:
        for i, t, f in frames:
            if f is None:
                pending.append((i, t, None, None))
            else:
                own = math.floor(max(t, 0.0) / segment)
                for k in [k for k in live if k < own]:  # no later frame belongs to them
                    live[k].close()
                for k in range(own, math.floor((max(t, 0.0) + WARMUP) / segment) + 1):
                    if k in live:
                        continue
                    # the oldest finished segments make room (a segment still taking frames stays)
                    while len(live) >= workers and (oldest := min(live)) < own:
                        live[oldest].close()
                        while pending and (pending[0][3] is None or pending[0][3].index <= oldest):
                            yield emit(pending.popleft())
                        live.pop(oldest).thread.join()
                    live[k] = _Segment(parser, k)
                live[own].send(f, True)
                for k in live:
                    if k > own:
                        live[k].send(f, False)  # the next segments' warm-up
                pending.append((i, t, f, live[own]))
            while pending and ready():
                yield emit(pending.popleft())
        for seg in live.values():
            seg.close()
        while pending:
            yield emit(pending.popleft())
    finally:  # stopped early or failed: the trackers drop the frames still queued
        for seg in live.values():
            seg.cancel()
        for seg in live.values():
            seg.thread.join()
