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

from microaction.data.readers.segments import Detection
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
    hop: float = 0.0  # seconds of new steps encoded at once (0: each step as soon as it is complete)
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


def event_record(
    d: Detection, taxonomy: Any, regions: list[str], horizon: float, delay: float | None
) -> dict[str, Any]:
    """The JSON line of one event (``horizon``: seconds of stream seen when it was emitted)."""
    now = time.time()
    rec: dict[str, Any] = {
        "video": d.video, "start": round(d.start, 3), "end": round(d.end, 3), "class_id": int(d.label),
        "class": taxonomy.names[d.label],
        "body": taxonomy.body_names[int(taxonomy.body_of(d.label))] if taxonomy.has_body else "",
        "score": round(d.score, 4),
        "routing": None if d.routing is None else dict(zip(regions, d.routing)),
        "emitted": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
        "emitted_unix": round(now, 3), "horizon": round(horizon, 3),
    }  # fmt: skip
    if d.person is not None:
        rec["person"] = d.person
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
    """The parser's thread: frames from the reader's queue, ``(frame, [(person, Frame)], size)``
    onto ``pq`` (waiting while it is full: the reader drops instead), then ``_END``."""

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                pq.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def run() -> None:
        try:
            while not stop.is_set():
                try:
                    f = fq.get(timeout=0.1)
                except queue.Empty:
                    continue
                if f is None:
                    break
                put((f, parser(f), parser.size(f)))
        except BaseException as e:  # handed to the session
            put(e)
        finally:
            parser.close()
            put(_END)

    th = threading.Thread(target=run, name="live-parser", daemon=True)
    th.start()
    return th


@dataclass
class _Person:
    """One person's features and detector (the only one without ``--people all``)."""

    features: LiveFeatures
    detector: LiveDetector


class _Session:
    """The consumer side: parsed frames in; features, detector, events, overlay."""

    def __init__(
        self, loaded: Any, ex: Any, opts: LiveOptions, spec: SourceSpec, name: str, sink: IO[str], info: dict[str, Any]
    ) -> None:
        from microaction.data.standardize import FeatureStats

        self.ex, self.opts, self.spec, self.name, self.sink, self.info = ex, opts, spec, name, sink, info
        self.tax = loaded.taxonomy
        self.regions = list(getattr(loaded.model, "regions", ()) or loaded.regions)
        self.stats = FeatureStats.from_meta(loaded.meta, source=str(loaded.checkpoint))
        self.model = loaded.model.to(opts.device)
        self.window_steps = int(loaded.meta.get("num_steps") or 192)  # the detector's training window
        self.people: dict[str | None, _Person] = {}
        self.parsed = 0  # frames parsed and taken in
        self.events: list[Detection] = []
        self.wall0: float | None = None  # wall clock of stream time 0
        self.native: tuple[int, int] | None = None
        fps = ex.params.fps or 25.0
        self.overlay = _Overlay(opts.overlay, self.regions, fps, self.tax) if opts.overlay else None
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        self.on_steps: Callable[[Steps], None] | None = None
        self._person(None).detector.warm_up(len(ex.regions), ex.region_dim, ex.global_dim)  # not while frames wait
        self.people.clear()

    def _person(self, who: str | None) -> _Person:
        p = self.people.get(who)
        if p is None:
            features = LiveFeatures(self.ex, context=self.opts.context, info=self.info)
            det = LiveDetector(self.model, self.name, features.rate, self.opts.settings, stats=self.stats,
                               min_visible_fraction=self.ex.params.min_visible_fraction, device=self.opts.device,
                               person=who, window_steps=self.window_steps)  # fmt: skip
            p = self.people[who] = _Person(features, det)
        return p

    def frame(
        self,
        f: Any,
        parsed: list[tuple[str | None, Any]],
        size: tuple[int, int],
        *,
        encode: bool = True,
        behind: bool = False,
    ) -> None:
        """Take in one parsed frame; encode the steps it completes and run the detector on them.
        ``behind``: more parsed frames wait (a live source only); the detector's run waits for the
        frame that finds none (or a second of new steps), so a busy machine delays events rather
        than dropping frames."""
        # the frames' earliest arrival against their time: a frame cannot come before it was made,
        # and the first ones wait for the demuxer's probing
        wall0 = time.time() - (time.monotonic() - f.received) - f.t
        self.wall0 = wall0 if self.wall0 is None else min(self.wall0, wall0)
        self.native = f.native
        self.parsed += 1
        if self.overlay is not None:
            self.overlay.add(f.t, f.rgb)
        for who, frame in parsed:
            p = self._person(who)
            p.features.push(frame, f.native, size)
            if encode:
                self._feed(p, p.features.ready(hop=self.opts.hop))
                if not behind or p.detector.horizon - p.detector.ran_at >= 1.0:
                    self._emit(p.detector.poll(), p.detector.horizon)

    def finish(self) -> None:
        for p in self.people.values():
            self._feed(p, p.features.ready(ended=True), ended=True)
            self._emit(p.detector.poll(final=True), p.detector.horizon)

    def _feed(self, p: _Person, steps: Steps | None, ended: bool = False) -> None:
        if steps is None:
            return
        if self.on_steps is not None:
            self.on_steps(steps)
        p.detector.add(steps)
        if self.overlay is not None and self.native is not None:
            self.overlay.draw(steps, self.native, ended)

    def _emit(self, found: list[Detection], horizon: float) -> None:
        for d in found:
            delay = None if self.wall0 is None or not self.spec.live else time.time() - (self.wall0 + d.end)
            rec = event_record(d, self.tax, self.regions, horizon, delay)
            self.sink.write(json.dumps(rec) + "\n")
            self.sink.flush()
            self.events.append(d)
            if self.overlay is not None:
                self.overlay.recent.append(d)
            if self.on_event is not None:
                self.on_event(rec)

    def summary(self) -> dict[str, Any]:
        ps = list(self.people.values())
        return {
            "frames_parsed": self.parsed, "steps": sum(p.features.done for p in ps), "events": len(self.events),
            "stream_seconds": round(max([p.detector.horizon for p in ps] + [0.0]), 3),
            "encode_seconds": round(sum(p.features.seconds for p in ps), 3),
            "runs": sum(p.detector.runs for p in ps),
            "detector_seconds": round(sum(p.detector.seconds for p in ps), 3),
            "people": [w for w in self.people if w is not None],
            "window_steps": ps[0].detector.size if ps else self.window_steps,
        }  # fmt: skip


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
    from microaction.engine.detection import load_detector
    from microaction.extract.pipeline import get_extractor, params_from_manifest

    if opts.people == "all" and opts.overlay:
        raise ValueError("--overlay follows one person; leave it out with --people all")
    loaded = load_detector(run_dir, opts.checkpoint, device=opts.device)
    params = params_from_manifest(loaded.manifest)
    if opts.parser:
        params = replace(params, parser=opts.parser, parser_options={})
    ex = get_extractor(params)
    warning = whole_recordings_warning(loaded.config.data.store if loaded.config else None, params)
    if warning:
        print(f"live: warning: {warning}", file=sys.stderr, flush=True)
    parser = FrameParser(ex, opts.parse_from, opts.people)
    spec = replace(opts.source, fps=params.fps, stride=params.stride, max_side=params.max_side,
                   pixels=ex.needs_pixels or bool(opts.overlay))  # fmt: skip
    name = opts.name or source_name(spec.source)
    opts.out.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    sink: IO[str] = open(opts.events, "w", encoding="utf-8") if opts.events else sys.stdout  # noqa: SIM115
    try:
        session = _Session(loaded, ex, opts, spec, name, sink, parser.info)
    except BaseException:
        parser.close()
        raise
    session.on_event, session.on_steps = on_event, on_steps
    restore = _on_sigint(stop)
    if not opts.quiet:
        print(f"live: reading {spec.source} ({spec.kind})", file=sys.stderr, flush=True)
    fq, sstats, reader = start_reader(spec)
    pq: queue.Queue[Any] = queue.Queue(maxsize=8)
    pstop = threading.Event()
    _parse_thread(fq, pq, parser, pstop)
    t_start = time.monotonic()
    try:
        failure = _consume(session, pq, spec, opts.stall, stop)
        session.finish()
    finally:
        fq.stop.set()
        pstop.set()
        reader.join(timeout=2.0)  # it ends at its next frame or read (a read of stdin waits 0.1 s at most)
        restore()
        if session.overlay is not None:
            session.overlay.writer.close()
        if sink is not sys.stdout:
            sink.close()
    failure = failure or sstats.error
    summary = {
        "source": spec.source, "kind": spec.kind, "video": name, "status": "failed" if failure else "ended",
        "error": failure, "stopped": stop.is_set(), "frames_decoded": sstats.decoded,
        "frames_sampled": sstats.sampled, "frames_dropped": sstats.dropped, "reconnects": sstats.reconnects,
        "seconds": round(time.monotonic() - t_start, 3), **session.summary(),
        "lookahead": opts.settings.lookahead, "hop": opts.hop, "warning": warning,
    }  # fmt: skip
    people = [w for w in session.people if w is not None]
    paths = _write_outputs(session.events, opts, session.tax, session.regions, summary, people)
    return LiveResult(1 if failure else 0, session.events, summary, paths)


def whole_recordings_warning(store: str | Path | None, params: Any) -> str | None:
    """What to say when the run's store holds recordings extracted whole (shorter than
    ``stream_after``): their pose features are centred on the whole recording's torso, live ones
    (as a streamed recording's) on each frame's past ``centre_seconds``, so the detector would see
    other features live than it was trained on. None when all were streamed, the store is not
    here, or the features do not depend on it."""
    from microaction.data.store import FeatureStore, StoreError

    if store is None or not params.centre_seconds or "pose" not in params.encoders:
        return None
    try:
        statuses = FeatureStore.open(store).statuses()
    except StoreError:  # the store is not here (a run copied without it): nothing to compare
        return None
    ok = [st for st in statuses.values() if st.get("status") == "ok"]
    total, whole = len(ok), sum("chunks" not in st for st in ok)
    if not whole:
        return None
    return (f"{store}: {whole} of {total} recordings were extracted whole (not longer than --stream-after "
            f"{params.stream_after:g} s), their pose centred on the whole recording; live, each frame's pose is "
            f"centred on the {params.centre_seconds:g} s before it, as a streamed recording's: the detector sees "
            "other features than it was trained on. For a run meant for mar live, extract with --stream-after 0")  # fmt: skip


def _consume(
    session: _Session, pq: queue.Queue[Any], spec: SourceSpec, stall: float, stop: threading.Event
) -> str | None:
    """Parsed frames into the session until the end, a failure (returned) or ``stop``."""
    last = time.monotonic()
    while not stop.is_set():
        try:
            item = pq.get(timeout=0.1)
        except queue.Empty:
            if spec.kind in ("stdin", "device") and time.monotonic() - last > stall:
                return f"{spec.source}: no frame for {stall:g} s (stalled)"
            continue
        if item is _END:
            return None
        if isinstance(item, BaseException):
            return f"{spec.source}: {type(item).__name__}: {item}"
        last = time.monotonic()
        session.frame(*item, behind=spec.live and not pq.empty())
    while True:  # stopped: the frames already parsed are part of what was seen
        try:
            item = pq.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, tuple):
            session.frame(*item, encode=False)


def _write_outputs(
    events: list[Detection],
    opts: LiveOptions,
    tax: Any,
    regions: list[str],
    summary: dict[str, Any],
    people: list[str],
) -> dict[str, Path]:
    from microaction.data.store import atomic_write_bytes
    from microaction.report.timeline import write_timeline

    seconds = summary["stream_seconds"] or None
    paths = write_timeline(events, opts.out, tax, regions, None, duration=seconds, lanes=opts.lanes, people=people)
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

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore
