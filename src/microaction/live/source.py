"""A live source read on its own thread: frames decoded with PyAV, sampled and scaled as a store's
extraction samples them, handed over through a bounded queue.

A source is a video file (as fast as possible, or at its own frame rate with ``realtime``), a
network stream FFmpeg opens (``rtsp://``, ``http://``, ``udp://``, ``tcp://``, ...), a camera
device (``/dev/videoN``: format ``v4l2``) or ``-``: a container stream on standard input (a
streamable container: MPEG-TS, Matroska, fragmented MP4; a plain MP4 keeps its index at the end).

The reader never waits for the consumer on a live source (everything but a file read as fast as
possible): when the queue is full the oldest frame in it is dropped and counted, so a slow model
costs frames, not latency. A file read as fast as possible waits instead (nothing is lost).

A network stream or a camera that fails (an error, a read timeout, or its end: a live source has
none) is opened again up to ``reconnects`` times, ``reconnect_wait`` seconds apart; after that the
source has failed. A file or standard input ends at its end; an error there is a failure at once
(neither can be opened again where it stopped).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microaction.extract.video import working_size

__all__ = ["FrameQueue", "LiveFrame", "SourceSpec", "SourceStats", "start_reader"]

NETWORK = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://", "rtp://")


@dataclass(frozen=True)
class LiveFrame:
    """A sampled frame: its index among the source's decoded frames, its time (seconds from the
    first frame, continued across reconnects), its position among the sampled frames, and the RGB
    image at the working resolution (None when no stage needs pixels)."""

    index: int
    t: float
    pos: int
    rgb: np.ndarray | None
    native: tuple[int, int]  # (H, W) of the source
    received: float  # time.monotonic() when it was decoded


@dataclass
class SourceSpec:
    """What to read and how (``fps``, ``stride``, ``max_side``: the run's store sampling)."""

    source: str
    fmt: str | None = None
    realtime: bool = False
    fps: float | None = None
    stride: int = 1
    max_side: int = 640
    pixels: bool = True
    reconnects: int = 3
    reconnect_wait: float = 1.0
    timeout: float = 10.0  # seconds without data from a network source before it counts as stalled
    queue_size: int = 48

    @property
    def kind(self) -> str:
        if self.source == "-":
            return "stdin"
        if self.fmt == "v4l2" or self.source.startswith("/dev/video"):
            return "device"
        if self.source.startswith(NETWORK) or "://" in self.source:
            return "network"
        return "file"

    @property
    def live(self) -> bool:
        """Frames come at the source's pace: a slow consumer drops frames instead of waiting."""
        return self.kind != "file" or self.realtime


@dataclass
class SourceStats:
    decoded: int = 0  # frames decoded
    sampled: int = 0  # frames kept by the sampling
    dropped: int = 0  # sampled frames dropped because the consumer was behind
    reconnects: int = 0
    error: str | None = None  # why the source failed (None: it ended or was stopped)
    errors: list[str] = field(default_factory=list)  # every failure, reconnects included


class FrameQueue:
    """A bounded queue between the reader and the consumer; ``put`` on a full queue drops the
    oldest frame (live) or waits (a file read as fast as possible)."""

    def __init__(self, size: int, drop: bool, stats: SourceStats) -> None:
        self.q: queue.Queue[LiveFrame | None] = queue.Queue(maxsize=max(1, size))
        self.drop, self.stats = drop, stats
        self.stop = threading.Event()

    def put(self, item: LiveFrame | None) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put_nowait(item)
                return True
            except queue.Full:
                if self.drop and item is not None:
                    try:
                        old = self.q.get_nowait()
                        if old is not None:
                            self.stats.dropped += 1
                        else:  # never drop the end mark
                            self.q.put_nowait(old)
                    except (queue.Empty, queue.Full):
                        pass
                else:
                    time.sleep(0.005)
        return False

    def get(self, timeout: float) -> LiveFrame | None:
        """The next frame; None at the end; raises ``queue.Empty`` after ``timeout`` seconds."""
        return self.q.get(timeout=timeout)


class _Stdin:
    """Standard input for the demuxer, read from its file descriptor a little at a time, so that a
    stopped session's reader sees an end instead of waiting in a read (and holds no lock of
    ``sys.stdin`` at interpreter shutdown)."""

    def __init__(self, stop: threading.Event) -> None:
        self.fd, self.stop = sys.stdin.fileno(), stop

    def read(self, n: int = -1) -> bytes:
        import select

        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                return os.read(self.fd, n if n > 0 else 1 << 16)
        return b""


def _open(spec: SourceSpec, stop: threading.Event) -> Any:
    import av

    opts: dict[str, Any] = {}
    if spec.kind == "stdin":
        return av.open(_Stdin(stop), mode="r", format=spec.fmt)
    if spec.kind == "device":
        return av.open(spec.source, format=spec.fmt or "v4l2")
    if spec.kind == "file" and spec.fmt is None:  # with a format it may be a device or a filter graph
        p = Path(spec.source)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    else:
        opts["timeout"] = (spec.timeout, spec.timeout)
    return av.open(spec.source, format=spec.fmt, **opts)


class _Sampler:
    """Online frame sampling: every ``stride``-th frame, or the frame nearest to each point of a
    grid of ``fps`` per second (what ``Sampling.select`` picks from a whole video, decided frame by
    frame from the source's frame interval)."""

    def __init__(self, fps: float | None, stride: int) -> None:
        self.fps, self.stride = fps, stride
        self.next: float | None = None

    def feed(self, n: int, t: float, step: float) -> bool:
        """Whether frame ``n`` at ``t`` seconds is kept (``step``: the source's frame interval)."""
        if self.fps is None:
            return n % self.stride == 0
        if self.next is None:
            self.next = t
        half = 0.5 * step * 0.999
        if t < self.next - half:
            return False
        while self.next <= t + half:  # the grid points this frame is the nearest to
            self.next += 1.0 / self.fps
        return True


def _frames(spec: SourceSpec, stats: SourceStats, stop: threading.Event) -> Iterator[LiveFrame]:
    """Sampled frames across reconnects (times continue); sets ``stats.error`` on failure."""
    import av

    failed, offset, pos, n = 0, 0.0, 0, 0
    reconnecting = False
    sampler = _Sampler(spec.fps, spec.stride)
    last_t: float | None = None
    while not stop.is_set():
        got_frames = False
        try:
            container = _open(spec, stop)
        except Exception as e:  # av.error.*, OSError
            stats.errors.append(f"open: {type(e).__name__}: {e}")
            container = None
        if container is not None:
            try:
                if not container.streams.video:
                    raise ValueError(f"{spec.source}: no video stream")
                s = container.streams.video[0]
                s.thread_type = "AUTO"
                rate = s.average_rate or s.guessed_rate
                step = 1.0 / float(rate) if rate else 1.0 / 25.0
                t0: float | None = None
                start = time.monotonic()
                for frame in container.decode(s):
                    if stop.is_set():
                        break
                    ft = frame.time if frame.time is not None else n * step
                    if t0 is None:
                        t0 = ft
                        offset = 0.0 if last_t is None else last_t + step
                    t = offset + ft - t0
                    if spec.realtime and spec.kind == "file":  # the file at its own frame rate
                        wait = start + (ft - t0) - time.monotonic()
                        if wait > 0:
                            time.sleep(wait)
                    stats.decoded += 1
                    got_frames = True
                    last_t = t
                    n += 1
                    if not sampler.feed(n - 1, t, step):
                        continue
                    stats.sampled += 1
                    H, W = int(frame.height), int(frame.width)
                    rgb = None
                    if spec.pixels:
                        w, h = working_size(W, H, spec.max_side)
                        rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
                    yield LiveFrame(n - 1, float(t), pos, rgb, (H, W), time.monotonic())
                    pos += 1
                if stop.is_set() or spec.kind in ("file", "stdin"):
                    return  # the end of a file or a pipe is its end
                stats.errors.append("the stream ended")
            except av.error.FFmpegError as e:
                stats.errors.append(f"read: {type(e).__name__}: {e}")
                if spec.kind in ("file", "stdin"):
                    stats.error = f"{spec.source}: {stats.errors[-1]}"
                    return
            except ValueError as e:
                stats.error = str(e)
                return
            finally:
                container.close()
        if spec.kind in ("file", "stdin") and not got_frames:
            stats.error = f"{spec.source}: {stats.errors[-1] if stats.errors else 'no frames'}"
            return
        # reconnects that failed since the stream last gave frames
        failed = 0 if got_frames else failed + int(reconnecting)
        if failed >= spec.reconnects:
            stats.error = f"{spec.source}: gave up after {stats.reconnects} reconnect(s): {stats.errors[-1]}"
            return
        stats.reconnects += 1
        reconnecting = True
        stop.wait(spec.reconnect_wait)


def start_reader(spec: SourceSpec) -> tuple[FrameQueue, SourceStats, threading.Thread]:
    """Start the reader thread; frames arrive on the queue, None marks the end (``stats.error``
    says whether the source failed). ``queue.stop.set()`` stops it."""
    stats = SourceStats()
    fq = FrameQueue(spec.queue_size, spec.live, stats)

    def run() -> None:
        try:
            for f in _frames(spec, stats, fq.stop):
                if not fq.put(f):
                    return
        except Exception as e:  # anything unexpected ends the source as failed
            stats.error = f"{spec.source}: {type(e).__name__}: {e}"
        finally:
            fq.put(None)

    thread = threading.Thread(target=run, name="live-reader", daemon=True)
    thread.start()
    return fq, stats, thread
