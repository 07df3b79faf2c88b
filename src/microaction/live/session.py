"""A live session: source → parse → features → detector → events, timeline and overlay.

Three threads: the reader (``live.source``: decodes, never waits on a live source), the parser
(the run's parser frame by frame; MediaPipe releases the GIL) and this one (features, detector,
events, overlay). Between them bounded queues: a parser or model that falls behind fills them and
the reader drops the oldest frames (counted). Events are written (one JSON line each, flushed)
as they become final; when the source ends, fails, stalls or the user presses Ctrl-C (SIGINT),
the steps and detections still pending are finalised and the timeline files are written, so
nothing seen is lost. ``LiveResult.status`` is 0 when the source ended or was stopped, 1 when it
failed.
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from microaction.data.segments import Detection
from microaction.live.detector import LiveDetector, WindowSettings
from microaction.live.features import FrameParser, LiveFeatures, Steps
from microaction.live.source import SourceSpec, start_reader

__all__ = ["LiveOptions", "LiveResult", "event_record", "run_live"]

_END = object()


@dataclass
class LiveOptions:
    source: SourceSpec
    out: Path  # timeline.csv / .json / .eaf / .html and live.json
    settings: WindowSettings = field(default_factory=WindowSettings)
    events: str | None = None  # a file for the JSON lines (None: standard output)
    overlay: str | None = None
    name: str | None = None  # the recording's name in events and timeline (default: from the source)
    parse_from: str | None = None
    parser: str | None = None  # another parser than the run's store's (same landmarks, e.g. mediapipe)
    people: str = "main"
    context: float = 3.0  # seconds of past frames the encoders and region boxes see
    hop: float = 0.5  # seconds of new steps encoded at once
    stall: float = 10.0  # seconds without a frame from a pipe or a camera before it counts as stalled
    checkpoint: str = "best"
    device: str = "cpu"
    lanes: str = "body"
    quiet: bool = False


@dataclass
class LiveResult:
    status: int
    events: list[Detection]
    stats: dict[str, Any]
    paths: dict[str, Path]


def source_name(source: str) -> str:
    if source == "-":
        return "stdin"
    tail = source.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    return (tail.rsplit(".", 1)[0] if "." in tail else tail) or "live"


def event_record(d: Detection, taxonomy: Any, regions: list[str], delay: float | None) -> dict[str, Any]:
    """The JSON line of one event."""
    now = time.time()
    rec: dict[str, Any] = {
        "video": d.video, "start": round(d.start, 3), "end": round(d.end, 3), "class_id": int(d.label),
        "class": taxonomy.names[d.label],
        "body": taxonomy.body_names[int(taxonomy.body_of(d.label))] if taxonomy.has_body else "",
        "score": round(d.score, 4),
        "routing": None if d.routing is None else dict(zip(regions, d.routing)),
        "emitted": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
        "emitted_unix": round(now, 3),
    }  # fmt: skip
    if delay is not None:
        rec["delay"] = round(delay, 3)
    return rec


class _Overlay:
    """Frames wait here until the steps around them (their region boxes) are encoded."""

    def __init__(self, path: str, regions: list[str], fps: float, taxonomy: Any) -> None:
        from microaction.report.overlay import OverlayStream

        self.writer = OverlayStream(path, regions, fps)
        self.tax = taxonomy
        self.frames: deque[tuple[float, np.ndarray]] = deque()
        self.recent: deque[Detection] = deque(maxlen=3)

    def add(self, t: float, rgb: np.ndarray | None) -> None:
        if rgb is not None:
            self.frames.append((t, rgb))

    def draw(self, steps: Steps, native: tuple[int, int], ended: bool = False) -> None:
        half = 0.5 * (steps.times[1] - steps.times[0]) if len(steps.times) > 1 else 0.1
        caption = [f"{self.tax.names[d.label]} {100 * d.score:.0f}% ({d.start:.1f}-{d.end:.1f}s)"
                   for d in reversed(self.recent)] or ["-"]  # fmt: skip
        latest = self.recent[-1] if self.recent else None
        routing = None if latest is None or latest.routing is None else np.asarray(latest.routing)
        while self.frames and (ended or self.frames[0][0] <= steps.times[-1] + half):
            t, rgb = self.frames.popleft()
            j = int(np.clip(np.searchsorted(steps.times, t - half), 0, len(steps.times) - 1))
            boxes = steps.boxes[:, j] * (rgb.shape[1] / native[1])
            self.writer.write(rgb, boxes, routing, caption)


def _parse_thread(fq: Any, pq: queue.Queue[Any], parser: FrameParser, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        try:
            while not stop.is_set():
                try:
                    f = fq.get(timeout=0.1)
                except queue.Empty:
                    continue
                if f is None:
                    break
                item = (f, parser(f), parser.size(f))
                while not stop.is_set():
                    try:
                        pq.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # handed to the session
            pq.put(e)
        finally:
            parser.close()
            pq.put(_END)

    th = threading.Thread(target=run, name="live-parser", daemon=True)
    th.start()
    return th


def run_live(
    run_dir: str | Path,
    opts: LiveOptions,
    *,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_steps: Callable[[Steps], None] | None = None,
    stop: threading.Event | None = None,
) -> LiveResult:
    """Run a live session until the source ends or fails, ``stop`` is set, or SIGINT.
    ``on_event`` gets each event's record as it is emitted, ``on_steps`` each batch of feature
    steps (before standardisation) as it is encoded."""
    from microaction.data.standardize import FeatureStats
    from microaction.engine.detection import load_detector
    from microaction.extract.pipeline import get_extractor, params_from_manifest

    if opts.people != "main":
        raise ValueError("--people all is not available live yet: one person (the main one) is followed")
    loaded = load_detector(run_dir, opts.checkpoint, device=opts.device)
    params = params_from_manifest(loaded.manifest)
    if opts.parser:
        params = replace(params, parser=opts.parser, parser_options={})
    ex = get_extractor(params)
    parser = FrameParser(ex, opts.parse_from)
    spec = replace(opts.source, fps=params.fps, stride=params.stride, max_side=params.max_side,
                   pixels=ex.needs_pixels or bool(opts.overlay))  # fmt: skip
    name = opts.name or source_name(spec.source)
    regions = list(getattr(loaded.model, "regions", ()) or loaded.regions)
    tax = loaded.taxonomy
    features = LiveFeatures(ex, context=opts.context)
    stats = FeatureStats.from_meta(loaded.meta, source=str(loaded.checkpoint))
    model = loaded.model.to(opts.device)
    det = LiveDetector(model, name, features.rate, opts.settings, stats=stats,
                       min_visible_fraction=params.min_visible_fraction, device=opts.device)  # fmt: skip
    opts.out.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    restore = _on_sigint(stop)
    sink: IO[str] = open(opts.events, "w", encoding="utf-8") if opts.events else sys.stdout  # noqa: SIM115
    det.warm_up(
        len(ex.regions), ex.region_dim, ex.global_dim
    )  # the first forward pass is slow: not while frames queue up
    if not opts.quiet:
        print(f"live: reading {spec.source} ({spec.kind})", file=sys.stderr, flush=True)
    fq, sstats, _reader = start_reader(spec)
    pq: queue.Queue[Any] = queue.Queue(maxsize=8)
    pstop = threading.Event()
    _parse_thread(fq, pq, parser, pstop)
    overlay = _Overlay(opts.overlay, regions, params.fps or 25.0, tax) if opts.overlay else None
    events: list[Detection] = []
    wall0: float | None = None  # wall clock of stream time 0 (the first frame's arrival, minus its time)
    native: tuple[int, int] | None = None
    failure: str | None = None
    t_start, last_frame = time.monotonic(), time.monotonic()

    def emit(found: list[Detection]) -> None:
        for d in found:
            delay = None if wall0 is None or not spec.live else time.time() - (wall0 + d.end)
            rec = event_record(d, tax, regions, delay)
            sink.write(json.dumps(rec) + "\n")
            sink.flush()
            events.append(d)
            if overlay is not None:
                overlay.recent.append(d)
            if on_event is not None:
                on_event(rec)

    def feed(steps: Steps | None, ended: bool = False) -> None:
        if steps is None:
            return
        if on_steps is not None:
            on_steps(steps)
        det.add(steps)
        if overlay is not None and native is not None:
            overlay.draw(steps, native, ended)

    try:
        while not stop.is_set():
            try:
                item = pq.get(timeout=0.1)
            except queue.Empty:
                if spec.kind in ("stdin", "device") and time.monotonic() - last_frame > opts.stall:
                    failure = f"{spec.source}: no frame for {opts.stall:g} s (stalled)"
                    break
                continue
            if item is _END:
                break
            if isinstance(item, BaseException):
                failure = f"{spec.source}: {type(item).__name__}: {item}"
                break
            f, frame, size = item
            last_frame = time.monotonic()
            if wall0 is None:
                wall0 = time.time() - (time.monotonic() - f.received) - f.t
            native = f.native
            features.push(frame, f.native, size)
            if overlay is not None:
                overlay.add(f.t, f.rgb)
            feed(features.ready(hop=opts.hop))
            emit(det.poll())
        while stop.is_set():  # stopped: the frames already parsed are part of what was seen
            try:
                item = pq.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, tuple):
                features.push(item[1], item[0].native, item[2])
                if overlay is not None:
                    overlay.add(item[0].t, item[0].rgb)
        feed(features.ready(ended=True), ended=True)
        emit(det.poll(final=True))
    finally:
        fq.stop.set()
        pstop.set()
        restore()
        if overlay is not None:
            overlay.writer.close()
        if sink is not sys.stdout:
            sink.close()
    failure = failure or sstats.error
    seconds = time.monotonic() - t_start
    summary = {
        "source": spec.source, "kind": spec.kind, "video": name, "status": "failed" if failure else "ended",
        "error": failure, "stopped": stop.is_set(), "frames_decoded": sstats.decoded,
        "frames_sampled": sstats.sampled, "frames_dropped": sstats.dropped, "reconnects": sstats.reconnects,
        "steps": features.done, "events": len(events), "seconds": round(seconds, 3),
        "stream_seconds": round(max(det.horizon, 0.0), 3), "encode_seconds": round(features.seconds, 3),
        "lookahead": opts.settings.lookahead, "window": opts.settings.window, "hop": opts.hop, **det.state(),
    }  # fmt: skip
    paths = _write_outputs(events, opts, tax, regions, summary, max(det.horizon, 0.0))
    return LiveResult(1 if failure else 0, events, summary, paths)


def _write_outputs(
    events: list[Detection], opts: LiveOptions, tax: Any, regions: list[str], summary: dict[str, Any], seconds: float
) -> dict[str, Path]:
    from microaction.data.store import atomic_write_bytes
    from microaction.report.timeline import write_timeline

    paths = write_timeline(events, opts.out, tax, regions, None, duration=seconds or None, lanes=opts.lanes)
    paths["live"] = opts.out / "live.json"
    atomic_write_bytes(paths["live"], json.dumps(summary, indent=1).encode())
    return paths


def _on_sigint(stop: threading.Event) -> Callable[[], None]:
    """SIGINT sets ``stop`` (the session then finishes and writes everything); a second one
    interrupts at once. Returns the function that puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)
