"""Long recordings, streamed: one feature sequence for a whole recording, chunk by chunk.

A video (or keypoint stream) longer than ``ExtractParams.stream_after`` seconds is never held in
memory whole. Its sampled frames are decoded, parsed (MediaPipe tracks from frame to frame across
chunks), and every ``chunk_seconds`` of video the chunk is encoded by the same code as a clip
(``Extractor.encode``) on the chunk plus ``context_seconds`` of frames on either side, so region
boxes that follow the person (``box_window``), gap filling and every encoder's windows see the
same neighbourhood as in one pass; of the result the chunk keeps its own share of a fixed
feature grid (``feature_rate`` steps/s, default ``RECORDING_RATE``) and its own frames' landmarks.
The frames held are the chunk and its context (memory independent of the recording's length).

Each finished chunk is written atomically to ``STORE/work/<key>/chunk_NNNNN.npz`` beside a
``plan.json`` (what the chunks depend on: the source file's size and time, the chunk grid). A
killed extraction resumes at the first missing chunk: the frames before it are decoded but not
parsed or encoded. When the last chunk is done the chunks are joined into the store's item (per
step boxes and validity, the clip-level summary), the status written, and the work folder removed.

What is computed over a whole clip on the clip path is computed over each chunk and its context
here: the torso scale (box sizes), the pose encoder's torso centre and scale, a region's validity
(``region_valid`` of the item is then the share of frames the region was seen in, as for a clip).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microaction.data.prefetch import background
from microaction.data.store import FeatureStore, atomic_write_bytes
from microaction.extract.encoders.base import rate_steps
from microaction.extract.jobs.segment_parsing import as_tracker, parse_segments, resume_from
from microaction.extract.parsers.base import ParseError, ParseResult, interpolate_gaps, landmark_region_masks
from microaction.extract.regions import landmark_counts, region_report
from microaction.extract.video import VideoError, iter_frames, probe, source_identity
from microaction.skeleton import NUM_LANDMARKS

if TYPE_CHECKING:
    from microaction.extract.jobs.people_stream import PersonStream
    from microaction.extract.pipeline import Extraction, Extractor, Parsed

__all__ = [
    "RECORDING_RATE",
    "Chunks",
    "Frame",
    "chunk_parsed",
    "context_seconds",
    "discard_work",
    "join",
    "parse_frame",
    "recording_rate",
    "stream_recording",
    "write_recording",
]

RECORDING_RATE = 6.0  # steps/s of a streamed recording when ``feature_rate`` is not set
WORK = "work"
_STEP_ARRAYS = ("step_boxes", "step_valid", "face", "face_valid")  # extras on the step grid


@dataclass
class Frame:
    index: int
    t: float
    pos: int  # position among the recording's sampled frames
    frame: np.ndarray | None  # working-resolution RGB (None: keypoints only)
    kp: np.ndarray | None  # [33, 3] (None: the parser parses whole chunks)
    region_mask: np.ndarray | None = None
    person_mask: np.ndarray | None = None
    raw: bool = False  # a frame-by-frame parser's landmarks: gaps to fill, region masks to derive


def recording_rate(ex: Extractor) -> float:
    return float(ex.params.feature_rate or RECORDING_RATE)


def context_seconds(ex: Extractor) -> float:
    """Frames on either side of a chunk that its encoding sees: what a box at the chunk's edge
    depends on (the box window, then its smoothing over half a window) or the pose centre's past
    frames (``Extractor.pose_lookback``), plus encoder windows."""
    return max(0.75 * ex.params.box_window, ex.pose_lookback) + 1.0


def _pixel_frames(
    ex: Extractor, path: str, start: int | None, end: int | None, skip: float | None, person: PersonStream | None
) -> Iterator[Frame]:
    """Decoded frames with their landmarks, one at a time (decoding in a thread beside the parser)."""
    frames = background(iter_frames(path, ex.params.sampling(start, end), skip_before=skip))
    parser, tracker = ex.parser, as_tracker(ex.parser)
    if person is not None:  # one of several people, found beforehand (``extract.jobs.people_stream``)
        for pos, (i, t, img) in enumerate(frames):
            if pos >= len(person.keypoints):
                raise VideoError(f"{path}: more frames than when its people were found ({len(person.keypoints)})")
            if img is None:
                yield Frame(i, t, pos, None, None)
                continue
            yield Frame(i, t, pos, img, person.keypoints[pos], None, person.mask(pos), raw=True)
    elif tracker is not None:
        # trackers on a fixed grid of segments, side by side (``extract.jobs.segment_parsing``)
        for pos, (i, t, f, out) in enumerate(parse_segments(tracker, frames, ex.params.track_seconds)):
            if f is None:
                yield Frame(i, t, pos, None, None)  # skipped (resumed): counted only
                continue
            kp, mask = out
            yield Frame(i, t, pos, f, kp, None, mask, raw=True)
    elif parser.needs_pixels:  # a parser of whole clips: each chunk is parsed on its own
        for pos, (i, t, f) in enumerate(frames):
            yield Frame(i, t, pos, f, None)
    else:  # keypoint files beside pixel encoders: the file covers every frame of the video
        full = parser.parse(None, path)
        for pos, (i, t, f) in enumerate(frames):
            if f is not None and i >= full.num_frames:
                raise VideoError(f"{path}: video has frame {i}, the keypoint file only {full.num_frames}")
            yield Frame(i, t, pos, None, None) if f is None else parse_frame(full, i, i, t, pos, f, f.shape[:2])


def parse_frame(
    parse: ParseResult, row: int, index: int, t: float, pos: int, frame: np.ndarray | None = None,
    size: tuple[int, ...] | None = None,
) -> Frame:  # fmt: skip
    """Frame ``index`` with the landmarks and masks of ``parse``'s ``row`` (the landmarks scaled to
    a frame of ``size`` (H, W) pixels when given)."""
    kp = parse.keypoints[row]
    if size is not None:
        kp = kp.copy()
        kp[:, 0] *= size[1] / parse.image_size[1]
        kp[:, 1] *= size[0] / parse.image_size[0]
    rm = None if parse.region_masks is None else parse.region_masks[row]
    pm = None if parse.person_mask is None else parse.person_mask[row]
    return Frame(index, t, pos, frame, kp, rm, pm)


def chunk_parsed(
    ex: Extractor,
    recs: list[Frame],
    native: tuple[int, int],
    size: tuple[int, int],
    path: str,
    ended: bool,
    info: dict[str, Any] | None = None,
):
    """The ``Parsed`` of a chunk and its context. Region masks derived from a frame-by-frame parse
    are kept with their frames (the next chunks' context reuses them) once no later frame can
    change their gap filling. ``info``: what the whole parse said of its source (the landmarks it
    has, its confidence thresholds), kept with every chunk."""
    from microaction.extract.pipeline import Parsed

    ts = np.array([r.t for r in recs], np.float32)
    idx = np.array([r.index for r in recs], np.int64)
    # the frames as a list: the encoders stack only those in their span
    frames: list[np.ndarray] | None = [r.frame for r in recs] if recs[0].frame is not None else None  # type: ignore[misc]
    if recs[0].kp is None:
        parse = ex.parser.parse(np.stack(frames) if frames is not None else None, path)  # type: ignore[arg-type]
    else:
        kp = np.stack([r.kp for r in recs])  # type: ignore[misc]
        pm = np.stack([r.person_mask for r in recs]) if recs[0].person_mask is not None else None  # type: ignore[misc]
        rm = None
        max_gap = int(getattr(ex.parser, "max_gap", ex.params.parser_options.get("max_gap", 8)))
        if recs[0].raw:
            kp = interpolate_gaps(kp, max_gap)
        if recs[0].raw and pm is not None:
            todo = [j for j, r in enumerate(recs) if r.region_mask is None]
            if todo:
                new = landmark_region_masks(kp[todo], pm[todo], size)
                final = len(recs) if ended else len(recs) - max_gap - 1
                for j, m in zip(todo, new):
                    if j < final:
                        recs[j].region_mask = m
            got = {j: m for j, m in zip(todo, new)} if todo else {}
            rm = np.stack([got.get(j, r.region_mask) for j, r in enumerate(recs)])  # type: ignore[misc]
        elif recs[0].region_mask is not None:
            rm = np.stack([r.region_mask for r in recs])  # type: ignore[misc]
        parse = ParseResult(kp, size, rm, person_mask=pm, info=dict(info or {}))
    return Parsed(frames, ts, idx, native, parse, time.perf_counter())


def _open_work(work: Path, plan: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The work folder's plan (a stale one is cleared) and the first chunk not yet finished."""
    pf = work / "plan.json"
    if pf.is_file():
        try:
            old = json.loads(pf.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            old = None
        if old is not None and {k: v for k, v in old.items() if k != "origin"} == plan:
            k = 0
            while (work / f"chunk_{k:05d}.npz").is_file():
                k += 1
            return old, k
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(pf, json.dumps(plan).encode())
    return dict(plan), 0


def discard_work(store: FeatureStore, key: str) -> None:
    """Remove a recording's chunks once its item is committed."""
    shutil.rmtree(store.root / WORK / key, ignore_errors=True)


def _write_chunk(path: Path, got: Extraction, parsed: Parsed, own: np.ndarray) -> None:
    """One chunk's arrays (``own``: its own frames among those encoded) as an ``.npz``, atomically."""
    import io

    assert got.layout is not None
    arrays: dict[str, Any] = {
        "regions": got.regions.astype(np.float16),
        "global": got.global_.astype(np.float16),
        "timestamps": got.timestamps,
        "visible": got.layout.visible[own].sum(0).astype(np.int64),
        "frames": np.int64(own.sum()),
        "boxes": got.extras["boxes"],
        "keypoints": got.extras["keypoints"][own],
        "landmarks": landmark_counts(got.extras["keypoints"][own], parsed.parse.info.get("thresholds")),
        **{n: np.asarray(parsed.parse.info[n]) for n in ("thresholds", "provided") if n in parsed.parse.info},
        "frame_indices": got.extras["frame_indices"][own],
        **{n: got.extras[n] for n in _STEP_ARRAYS if n in got.extras},
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def stream_recording(
    ex: Extractor,
    store: FeatureStore,
    key: str,
    path: str,
    start: int | None = None,
    end: int | None = None,
    *,
    parsed: Parsed | None = None,
    person: PersonStream | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Chunks:
    """Extract a long recording chunk by chunk into ``store``'s work area, resuming at the first
    unfinished chunk (then ``write_recording`` and ``discard_work``, or ``join``).
    ``parsed``: keypoints already read (keypoints-only path); else the video is decoded (and,
    with ``person``, that person's landmarks and masks go with the frames)."""
    t_start = time.perf_counter()
    L, C, rate = float(ex.params.chunk_seconds), context_seconds(ex), recording_rate(ex)
    work = store.root / WORK / key
    plan: dict[str, Any] = {"source": source_identity(path), "start": start, "end": end, "chunk_seconds": L,
                            "context": C, "rate": rate, "params": ex.params.to_dict()}  # fmt: skip
    plan, k = _open_work(work, plan)
    origin: float | None = plan["origin"] if isinstance(plan.get("origin"), float) else None
    source_info: dict[str, Any] | None = None
    if parsed is not None:
        ts, idx, native = parsed.timestamps, parsed.indices, parsed.native
        source: Iterator[Frame] = (parse_frame(parsed.parse, j, int(idx[j]), float(ts[j]), j) for j in range(len(ts)))
        size: tuple[int, int] | None = parsed.parse.image_size
        source_info = {k: v for k, v in parsed.parse.info.items() if k in ("provided", "thresholds", "layout")}
    else:
        info = probe(path)
        native, size = (info.height, info.width), None
        # a resumed recording parses from the tracker segment its first chunk's context needs
        skip = resume_from(origin + k * L - C, ex.params.track_seconds) if (origin is not None and k > 0) else None
        source = _pixel_frames(ex, path, start, end, skip, person)

    def chunk(k: int, recs: list[Frame], last: float, ended: bool) -> None:
        assert origin is not None and size is not None
        lo, hi = origin + k * L, origin + (k + 1) * L
        steps = rate_steps(origin, last, rate, lo, hi)
        ts = np.array([r.t for r in recs], np.float32)  # as the encoder sees them
        fps = (len(ts) - 1) / max(float(ts[-1] - ts[0]), 1e-6) if len(ts) > 1 else 30.0
        enc = (max(e.window for e in ex.encoders) + 2) / fps + 1.0 / rate  # the encoders' context
        # the encoders' windows start where they do in one pass: at a multiple of their strides
        first = int(np.searchsorted(ts, np.float32(lo - enc)))
        while first > 0 and recs[first].pos % align:
            first -= 1
        a = float(ts[min(first, len(ts) - 1)])
        parsed = chunk_parsed(ex, recs, native, size, path, ended, source_info)
        got = ex.encode(parsed, rate=rate, steps=steps, span=(a, hi + enc))
        kept = (ts >= a) & (ts < hi + enc)
        own = ((ts >= lo) & (ts < hi))[kept]
        _write_chunk(work / f"chunk_{k:05d}.npz", got, parsed, own)
        if on_chunk is not None:
            on_chunk(k)

    align = int(np.lcm.reduce([max(1, e.stride) for e in ex.encoders]))
    buf: list[Frame] = []
    last_t: float | None = None
    pending: Future | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="chunk") as pool:
        for rec in source:
            if origin is None:
                origin = rec.t
                plan["origin"] = origin
                atomic_write_bytes(work / "plan.json", json.dumps(plan).encode())
            if size is None and rec.frame is not None:
                size = (int(rec.frame.shape[0]), int(rec.frame.shape[1]))
            last_t = rec.t
            if rec.t < origin + k * L - C or (rec.frame is None and rec.kp is None):
                continue  # before the first unfinished chunk's context (resumed)
            buf.append(rec)
            while rec.t >= origin + (k + 1) * L + C:  # chunk k and its context are all here
                recs = [r for r in buf if r.t < origin + (k + 1) * L + C]
                if pending is not None:
                    pending.result()  # one chunk encoding at a time, beside the parsing
                pending = pool.submit(chunk, k, recs, origin + (k + 1) * L, False)
                k += 1
                buf = [r for r in buf if r.t >= origin + k * L - C]
        if pending is not None:
            pending.result()
        if origin is None or last_t is None:
            raise VideoError(f"{path}: no frames")
        n_chunks = int(np.floor((last_t - origin) / L)) + 1
        while k < n_chunks:
            recs = [r for r in buf if r.t < origin + (k + 1) * L + C]
            if recs:
                chunk(k, recs, last_t, True)
            k += 1
            buf = [r for r in buf if r.t >= origin + k * L - C]
    return Chunks(work, n_chunks, native, rate, time.perf_counter() - t_start)


@dataclass
class Chunks:
    """A streamed recording's finished chunk files, to join (``join``) or write (``write_recording``)."""

    work: Path
    count: int
    native: tuple[int, int]
    rate: float
    seconds: float

    def files(self) -> list[Path]:
        # a chunk without frames (a gap in the video) has no file
        return [f for k in range(self.count) if (f := self.work / f"chunk_{k:05d}.npz").is_file()]


def _load(f: Path, *names: str) -> list[np.ndarray]:
    try:
        with np.load(f, allow_pickle=False) as z:
            return [z[n] for n in names]
    except (OSError, ValueError, KeyError) as e:
        raise ParseError(f"{f}: unreadable chunk ({e}); delete it to redo that chunk") from None


Pieces = dict[str, tuple[tuple[int, ...], Any, Callable[[], Iterator[np.ndarray]]]]


def _pieces(ex: Extractor, chunks: Chunks) -> tuple[Pieces, dict[str, Any]]:
    """The item's arrays as C-order pieces read from the chunk files one at a time (``name:
    (shape, dtype, pieces)``, store names), and the item's info. Nothing is held whole."""
    files = chunks.files()
    if not files:
        raise VideoError(f"{chunks.work}: no chunk was extracted")
    steps = frames = 0
    visible = None
    boxes = []
    counts = np.zeros((3, NUM_LANDMARKS))
    source: dict[str, np.ndarray] = {}  # the source's thresholds and provided landmarks
    for f in files:
        ts, fi, vis, box = _load(f, "timestamps", "frame_indices", "visible", "boxes")
        steps, frames = steps + len(ts), frames + len(fi)
        visible = vis if visible is None else visible + vis
        boxes.append(box)
        with np.load(f, allow_pickle=False) as z:
            if "landmarks" in z.files:  # chunks of an older run have none
                counts += z["landmarks"]
            source.update({n: z[n] for n in ("thresholds", "provided") if n in z.files})
    assert visible is not None
    valid = visible / max(frames, 1) >= ex.params.min_visible_fraction
    with np.load(files[0], allow_pickle=False) as z:
        first = {n: (z[n].shape, z[n].dtype) for n in z.files}
    R, _, D = first["regions"][0]
    Dg = first["global"][0][1]
    b = np.stack(boxes)
    union = np.concatenate([b[..., :2].min(0), b[..., 2:].max(0)], -1).astype(np.float32)

    def along(name: str, rows: int | None = None, mask: bool = False):
        """Pieces of ``name``: chunk after chunk (time first), or per row then chunk (``rows``)."""

        def gen() -> Iterator[np.ndarray]:
            if rows is None:
                for f in files:
                    yield _load(f, name)[0]
                return
            for r in range(rows):
                for f in files:
                    x = _load(f, name)[0][r]
                    yield x if not mask else (x & valid[r]) if x.dtype == bool else (x if valid[r] else x * 0)

        return gen

    arrays: Pieces = {
        "regions": ((R, steps, D), np.float16, along("regions", R, mask=True)),
        "global": ((steps, Dg), np.float16, along("global")),
        "region_valid": ((R,), bool, lambda: iter([valid])),
        "timestamps": ((steps,), np.float32, along("timestamps")),
        "extra_boxes": (union.shape, np.float32, lambda: iter([union])),
        "extra_step_boxes": ((R + 1, steps, 4), np.float32, along("step_boxes", R + 1)),
        "extra_step_valid": ((R, steps), bool, along("step_valid", R, mask=True)),
        "extra_keypoints": ((frames, *first["keypoints"][0][1:]), np.float32, along("keypoints")),
        "extra_frame_indices": ((frames,), np.int64, along("frame_indices")),
    }
    if "face" in first:
        arrays["extra_face"] = ((steps, *first["face"][0][1:]), np.uint8, along("face"))
        arrays["extra_face_valid"] = ((steps,), bool, along("face_valid"))
    info = {"frames": frames, "steps": steps, "size": [int(chunks.native[0]), int(chunks.native[1])],
            "seconds": round(chunks.seconds, 3), "chunks": chunks.count, "feature_rate": chunks.rate,
            "regions": region_report(ex.regions, visible, valid, counts, frames, source.get("thresholds"),
                                     source.get("provided"))}  # fmt: skip
    return arrays, info


def write_recording(ex: Extractor, store: FeatureStore, key: str, chunks: Chunks, info: dict[str, Any]) -> int:
    """Write a streamed recording's item from its chunks, piece by piece, and its status (``info``
    added); returns its frame count."""
    arrays, meta = _pieces(ex, chunks)
    keep = ("size", "seconds", "chunks", "feature_rate", "regions")
    store.write_pieces(key, arrays, {**info, "frames_decoded": meta["frames"], **{k: meta[k] for k in keep}})
    return int(meta["frames"])


def join(ex: Extractor, chunks: Chunks) -> Extraction:
    """A streamed recording's ``Extraction`` in memory (for a caller that wants the arrays)."""
    from microaction.extract.pipeline import Extraction

    arrays, info = _pieces(ex, chunks)
    whole = {
        n: np.concatenate([np.ravel(p) for p in gen()]).astype(dt).reshape(shape)
        for n, (shape, dt, gen) in arrays.items()
    }
    extras = {n[len("extra_") :]: v for n, v in whole.items() if n.startswith("extra_")}
    return Extraction(whole["regions"].astype(np.float32), whole["global"].astype(np.float32), whole["region_valid"],
                      whole["timestamps"], extras, info)  # fmt: skip
