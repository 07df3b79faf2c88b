"""Many videos into a feature store: job lists, sharding, worker processes, Ray, progress.

The unit of work is one video (``process_job``): extract, write the item, write its status (the
commit record). Any error becomes a ``failed`` status with the message, and the run goes on. A
video in which no body region was seen (no person found, or too briefly) is stored with the
status ``no_person`` and counted apart: training refuses it unless the config keeps it. Done
videos (ok or failed) are skipped on a re-run, so a killed run resumes where it stopped; writes
are atomic, so a SIGKILL leaves no torn entry.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from microaction.data.groups import is_mpiigi_csv, read_mpiigi_csv
from microaction.data.person_boxes import BoxRow, check_person_columns, person_fields
from microaction.data.samples import read_text
from microaction.data.store import READABLE_STATUSES, FeatureStore, StoreManifest, StoreMismatch, video_key
from microaction.extract.parsers.base import VISIBLE
from microaction.extract.pipeline import Extractor, ExtractParams, Parsed, get_extractor
from microaction.extract.stream import (
    WORK,
    Recording,
    discard_work,
    is_recording,
    stream_recording,
    write_recording,
)
from microaction.taxonomy import load_taxonomy

__all__ = [
    "VIDEO_EXTENSIONS",
    "Job",
    "RunSummary",
    "collect_jobs",
    "parse_shard",
    "process_job",
    "run_extraction",
    "shard_jobs",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".gif", ".mov", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class Job:
    key: str
    path: str  # video file (may be absent on the keypoints-only path)
    start: int | None = None
    end: int | None = None
    boxes: tuple[BoxRow, ...] = ()  # the annotation's person box(es): extraction follows that person
    tracks: bool = False  # rows name people by track number (no box): needs ``people="all"``


@dataclass
class RunSummary:
    total: int = 0  # jobs of this shard
    done: int = 0  # extracted now, a person found
    skipped: int = 0  # already in the store
    failed: int = 0  # failed now
    failed_before: dict[str, str] = field(default_factory=dict)  # skipped: failed in an earlier run (key -> error)
    no_person: int = 0  # extracted now, no body region seen (status no_person)
    frames: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)
    no_person_keys: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)  # regions invalid in (nearly) every item, and why
    size_guessed: list[str] = field(default_factory=list)  # items whose frame size was guessed

    def line(self) -> str:
        rate = (
            f"{self.done / self.seconds:.2f} videos/s, {self.frames / self.seconds:.1f} frames/s"
            if self.seconds > 0
            else ""
        )
        before = f" (+{len(self.failed_before)} failed earlier, not retried)" if self.failed_before else ""
        return (
            f"{self.total} videos: {self.done} done, {self.no_person} no person, {self.skipped} skipped, "
            f"{self.failed} failed{before}; {self.frames} frames in {self.seconds:.1f} s ({rate})"
        )

    def no_person_line(self) -> str:
        """The line the summary gives the videos stored as ``no_person`` ('' when there are none)."""
        if not self.no_person:
            return ""
        shown = ", ".join(self.no_person_keys[:5]) + (" ..." if len(self.no_person_keys) > 5 else "")
        return (
            f"no person found in {self.no_person} video(s) (stored as no_person; training refuses them "
            f"unless data.keep_no_person: true): {shown}"
        )

    def warnings(self) -> list[str]:
        """What the run got that a user should not take silently: regions invalid in nearly every
        item (``regions.unseen_lines``) and frame sizes guessed from the points."""
        out = list(self.unseen)
        if self.size_guessed:
            shown = ", ".join(self.size_guessed[:3]) + (" ..." if len(self.size_guessed) > 3 else "")
            out.append(
                f"frame size guessed from the keypoints' extent for {len(self.size_guessed)} item(s) ({shown}): "
                "boxes and normalised positions may be off; give it with --frame-size WxH"
            )
        return out


def _run_report(store: FeatureStore, keys: Sequence[str], summary: RunSummary) -> None:
    """Fill the summary's warnings from the status records of the items this run wrote (a job of
    several people: each person's item)."""
    from microaction.extract.regions import unseen_lines

    reports = []
    for key in keys:
        st = store.status(key) or {}
        items = (
            [(k, store.status(k) or {}) for k in st.get("people", [])] if st.get("status") == "people" else [(key, st)]
        )
        for k, one in items:
            if isinstance(one.get("regions"), dict):
                reports.append(one["regions"])
            if one.get("size_from") == "guessed":
                summary.size_guessed.append(f"{k}: {one.get('size', ['?', '?'])[1]}x{one.get('size', ['?', '?'])[0]}")
    summary.unseen = unseen_lines(reports)


def person_share(keypoints: np.ndarray) -> float:
    """Share of frames in which the parser saw anyone (a landmark at or above ``VISIBLE``)."""
    kp = np.asarray(keypoints)
    if kp.ndim < 2 or kp.shape[0] == 0:
        return 0.0
    seen = (kp[..., 2] >= VISIBLE).reshape(kp.shape[0], -1).any(axis=1)
    return float(seen.mean())


def collect_jobs(videos: str | os.PathLike[str], video_root: str | os.PathLike[str] | None = None) -> list[Job]:
    """Jobs from a folder (every video file below it), a manifest CSV (``video`` column, optional
    ``start``/``end``, ``person`` and a person box ``x1,y1,x2,y2`` [+ ``frame``]; paths relative to
    ``video_root`` or the CSV's folder), an MPII-GI sample CSV (``<rec_no>/<subject_pos>.<ext>``
    under ``video_root``, one job per snippet) or a pose pickle (one job per annotation, for
    ``--parser keypoints``; see ``microaction.data.poses``). Keys follow ``video_key`` of the name as
    written (a manifest) or of the path relative to the folder."""
    src = Path(videos)
    jobs: list[Job] = []
    if src.is_dir():
        for p in sorted(src.rglob("*")):
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
                rel = p.relative_to(src).as_posix()
                jobs.append(Job(video_key(rel), str(p)))
    elif src.is_file() and src.suffix.lower() == ".csv" and is_mpiigi_csv(src):
        root = Path(video_root) if video_root else src.parent
        for s in read_mpiigi_csv(src, load_taxonomy("mpiigi")):
            jobs.append(Job(s.key, str(_with_extension(root / s.video)), s.start, s.end))
    elif src.is_file() and src.suffix.lower() == ".csv":
        root = Path(video_root) if video_root else src.parent
        # read_text: a byte that is not UTF-8 is named by file and line
        reader = csv.DictReader(io.StringIO(read_text(src), newline=""))
        try:
            cols = [c.strip().lower() for c in (reader.fieldnames or [])]
            if "video" not in cols:
                raise ValueError(f"{src}: manifest has no 'video' column (has {cols})")
            check_person_columns(cols, f"{src}:1")
            boxed: dict[str, int] = {}
            for row in reader:
                n = reader.line_num
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                if not row.get("video"):
                    continue
                try:
                    start = int(row["start"]) if row.get("start") else None
                    end = int(row["end"]) if row.get("end") else None
                except ValueError:
                    raise ValueError(f"{src}:{n}: start/end must be integers") from None
                if (start is None) != (end is None):
                    raise ValueError(
                        f"{src}:{n}: 'start' without 'end' (or 'end' without 'start'): give both or neither"
                    )
                if start is not None and end is not None and end <= start:
                    raise ValueError(f"{src}:{n}: end {end} must be greater than start {start}")
                person, box = person_fields(row, f"{src}:{n}", start)
                if person is not None and box is None:  # a track number of --people all: the video's job
                    jobs.append(
                        Job(video_key(row["video"], start, end), str(root / row["video"]), start, end, (), True)
                    )
                    continue
                key = video_key(row["video"], start, end, person)
                if box is not None and key in boxed:  # the same person's box at another frame
                    j = jobs[boxed[key]]
                    jobs[boxed[key]] = replace(j, boxes=(*j.boxes, box))
                    continue
                if box is not None:
                    boxed[key] = len(jobs)
                jobs.append(Job(key, str(root / row["video"]), start, end, () if box is None else (box,)))
        except csv.Error as e:
            raise ValueError(f"{src}:{reader.line_num}: {e}") from None
    elif src.is_file() and src.suffix.lower() in (".pkl", ".pickle"):
        from microaction.extract.parsers.keypoints import pose_ref, pose_set

        jobs.extend(Job(video_key(name), pose_ref(src, name)) for name in pose_set(src).order)
    elif src.suffix.lower() in VIDEO_EXTENSIONS and not src.is_dir():
        # one video; it may be absent when only its keypoints are read (the parser says so if not)
        jobs.append(Job(video_key(src.name), str(src)))
    else:
        raise FileNotFoundError(f"{src}: not a folder of videos, a manifest .csv, a pose .pkl or a video file")
    seen: dict[str, Job] = {}
    for j in jobs:
        other = seen.get(j.key)
        if (
            other is not None
            and (j.tracks or other.tracks)
            and replace(j, tracks=False) == replace(other, tracks=False)
        ):
            seen[j.key] = replace(other, tracks=True)  # several people of one video: one job
            continue
        if j.key in seen and seen[j.key] != j:
            raise ValueError(f"two videos map to store key {j.key!r}: {seen[j.key].path} and {j.path}")
        seen[j.key] = j
    return list(seen.values())


def data_source(jobs: Sequence[Job], parser: str) -> str:
    """Where a store's videos come from, recorded in its manifest (``params.data_source``) so that a
    model trained on it knows: ``synthetic`` (``mar synth`` datasets; the ``groundtruth`` parser reads
    only those), ``real`` (any other file) or ``mixed``."""
    if parser == "groundtruth":
        return "synthetic"
    from microaction.data.synth.writer import synthetic_dataset_of

    seen: dict[Path, bool] = {}  # per folder: one dataset.json look-up each
    kinds = set()
    for j in jobs:
        folder = Path(j.path).parent
        if folder not in seen:
            seen[folder] = synthetic_dataset_of(j.path) is not None
        kinds.add("synthetic" if seen[folder] else "real")
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "real")


def _with_extension(stem: Path) -> Path:
    """The video file ``stem.<ext>`` (the first of VIDEO_EXTENSIONS there), else ``stem`` itself."""
    for ext in VIDEO_EXTENSIONS:
        if stem.with_name(stem.name + ext).is_file():
            return stem.with_name(stem.name + ext)
    return stem


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/N"`` (0 <= i < N) -> (i, N); None -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need 0 <= i < N")
    return i, n


def shard_jobs(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Deterministic split: sorted by key, every ``count``-th job from ``index`` (the shards of a
    job list partition it, whatever machine computes them)."""
    return sorted(jobs, key=lambda j: j.key)[index::count]


# parameters that do not change the features (a store may be finished on another machine)
_RUNTIME_PARAMS = ("device",)


def check_same_params(have: StoreManifest, want: StoreManifest, source: str) -> None:
    """Refuse to resume a store made with other extraction parameters (mixing would be silent)."""
    a = {k: v for k, v in (have.params.get("extract") or {}).items() if k not in _RUNTIME_PARAMS}
    b = {k: v for k, v in (want.params.get("extract") or {}).items() if k not in _RUNTIME_PARAMS}
    hint = ""
    popts = a.get("parser_options")
    if a.get("parser") == "keypoints" and isinstance(popts, dict) and not {"confidence", "min_confidence"} & set(popts):
        # made before keypoint confidence was read as each source means it: every source at 0.5
        a["parser_options"] = {**popts, "min_confidence": 0.5}
        hint = (
            "\n  (the store was made when every keypoint source was read at confidence 0.5: continue it with "
            "--min-confidence 0.5, or extract into a new store)"
        )
    # a parameter added after the store was made, at its default, changes nothing that store holds
    defaults = ExtractParams().to_dict()
    b = {k: v for k, v in b.items() if k in a or v != defaults.get(k)}
    diffs = [
        f"{k}: store has {a.get(k)!r}, this run {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    ]
    if diffs:
        raise StoreMismatch(f"{source}: store was extracted with other parameters:\n  " + "\n  ".join(diffs) + hint)


def process_job(
    extractor: Extractor, store: FeatureStore, job: Job, debug_dir: str | os.PathLike[str] | None = None
) -> tuple[str, str, int, str]:
    """Extract one video into the store (and its debug crops when asked).
    Returns (key, "ok"|"failed", frames, error)."""
    return finish_job(extractor, store, job, _stage1(extractor, job), debug_dir)


def _long_keypoints(extractor: Extractor, parsed: Parsed) -> bool:
    """A keypoint stream (no frames) longer than ``stream_after``: streamed like a long video."""
    ts = parsed.timestamps
    return parsed.frames is None and len(ts) > 0 and float(ts[-1] - ts[0]) > extractor.params.stream_after


def _stage1(
    extractor: Extractor, job: Job
) -> Parsed | Recording | list[tuple[int, Parsed | Recording]] | BaseException:
    try:
        if job.tracks and extractor.params.people != "all":
            raise ValueError(
                f"{job.path}: the manifest names people without a box; extract with --people all (person ids "
                "are its track numbers) or give each person's box"
            )
        if job.boxes or extractor.params.people == "all":
            from microaction.extract.people_parse import parse_people

            if is_recording(extractor, job.path, job.start, job.end):
                return Recording(people=True)  # found, then streamed person by person in stage 2
            target = {b[0]: np.asarray(b[1:], np.float32) for b in job.boxes} if job.boxes else None
            people = parse_people(extractor, job.path, job.start, job.end, target=target)
            return [(pid, Recording(p) if _long_keypoints(extractor, p) else p) for pid, p in people]
        if is_recording(extractor, job.path, job.start, job.end):
            return Recording()  # decoded, parsed and encoded chunk by chunk in stage 2
        parsed = extractor.parse(job.path, job.start, job.end)
        return Recording(parsed) if _long_keypoints(extractor, parsed) else parsed
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        e.__dict__["_mar_traceback"] = traceback.format_exc() if os.environ.get("MAR_DEBUG") else ""
        return e


def finish_job(
    extractor: Extractor,
    store: FeatureStore,
    job: Job,
    parsed: Parsed | Recording | list[tuple[int, Parsed | Recording]] | BaseException,
    debug_dir: str | os.PathLike[str] | None = None,
) -> tuple[str, str, int, str]:
    """Stage 2 of a job: encode and write the item(s), or record the failure of either stage.
    Several people: one item per person (``key#id``; the annotation's person keeps ``key``), then
    the job's own status ``{"status": "people", "people": [keys]}`` as its commit record."""
    try:
        if isinstance(parsed, BaseException):
            raise parsed
        found_work = None
        if isinstance(parsed, Recording) and parsed.people:
            from microaction.extract.people_stream import find_people_stream

            target = {b[0]: np.asarray(b[1:], np.float32) for b in job.boxes} if job.boxes else None
            found_work = f"{job.key}#people"  # pass 1's result, kept until the job is committed
            found = find_people_stream(
                extractor, job.path, job.start, job.end, store.root / WORK / found_work, target=target
            )
            parsed = [(p.id, Recording(person=p)) for p in found]
        people: list[tuple[int | None, Parsed | Recording]] = (
            list(parsed) if isinstance(parsed, list) else [(None, parsed)]
        )
        keys, statuses = [], []
        frames = 0
        for pid, one in people:
            key = job.key if (pid is None or job.boxes) else f"{job.key}#{pid}"
            who = {} if pid is None else {"person": pid}
            if isinstance(one, Recording):  # a long recording: chunk by chunk, resumable, written piece by piece
                if one.person is not None and (store.status(key) or {}).get("status") == "ok" and store.is_done(key):
                    keys.append(key)  # a person committed before the run was killed
                    statuses.append("ok")
                    continue
                chunks = stream_recording(
                    extractor, store, key, job.path, job.start, job.end, parsed=one.parsed, person=one.person
                )
                src = one.parsed.parse.info.get("size_from") if one.parsed is not None else None
                frames = write_recording(extractor, store, key, chunks,
                                         {"video": job.path, **who, **({"size_from": src} if src else {})})  # fmt: skip
                discard_work(store, key)
                keys.append(key)
                statuses.append("ok")
                continue
            ex = extractor.encode(one, keep=bool(debug_dir))
            frames = int(ex.info["frames"])
            # every region invalid: no one was found (or too briefly), the features are all zeros
            status = "ok" if bool(np.any(ex.region_valid)) else "no_person"
            info: dict[str, Any] = {"video": job.path, "frames_decoded": ex.info["frames"], "size": ex.info["size"],
                                    "seconds": ex.info["seconds"],
                                    "person_share": round(person_share(ex.extras["keypoints"]), 4)}  # fmt: skip
            info.update({k: ex.info[k] for k in ("regions", "size_from") if k in ex.info})
            if job.start is not None or job.end is not None:
                info.update(start=job.start, end=job.end)
            if pid is not None:
                info["person"] = pid
            store.write(
                key,
                regions=ex.regions,
                global_=ex.global_,
                region_valid=ex.region_valid,
                timestamps=ex.timestamps,
                extras=ex.extras,
                info=info,
                status=status,
            )
            keys.append(key)
            statuses.append(status)
            if debug_dir:
                _debug(debug_dir, key, ex)
        if isinstance(parsed, list) and not job.boxes:
            store.write_people(job.key, keys, {"video": job.path})
        if found_work is not None:
            discard_work(store, found_work)
        status = "ok" if "ok" in statuses else "no_person"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        err = f"{type(e).__name__}: {e}"
        if os.environ.get("MAR_DEBUG"):
            err += "\n" + (getattr(e, "_mar_traceback", "") or traceback.format_exc())
        store.write_failure(job.key, err, {"video": job.path})
        return job.key, "failed", 0, err
    return job.key, status, frames, ""


def _debug(debug_dir: str | os.PathLike[str], key: str, ex: Any) -> None:
    from microaction.extract.debug import write_debug_crops

    try:
        write_debug_crops(debug_dir, key, ex)
    except Exception as e:  # debug images never fail a run
        print(f"mar extract: debug crops for {key} failed: {e}", file=sys.stderr)


def run_pipelined(
    extractor: Extractor, store: FeatureStore, jobs: Sequence[Job], debug_dir: str | None = None
) -> Iterator[tuple[str, str, int, str]]:
    """One process, two stages overlapped: while a thread encodes and writes video k, the caller's
    thread decodes and parses video k+1 (MediaPipe, PyAV and OpenCV release the GIL)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
        pending: Future | None = None
        for job in jobs:
            parsed = _stage1(extractor, job)
            fut = pool.submit(finish_job, extractor, store, job, parsed, debug_dir)
            if pending is not None:
                yield pending.result()
            pending = fut
        if pending is not None:
            yield pending.result()


# -- worker processes --------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(params: dict[str, Any], store_root: str, debug_dir: str | None) -> None:
    _WORKER["ex"] = get_extractor(ExtractParams.from_dict(params))
    _WORKER["store"] = FeatureStore.open(store_root)
    _WORKER["debug"] = debug_dir


def _worker_job(job: Job) -> tuple[str, str, int, str]:
    return process_job(_WORKER["ex"], _WORKER["store"], job, _WORKER["debug"])


def _ray_job(params: dict[str, Any], store_root: str, job: Job, debug_dir: str | None) -> tuple[str, str, int, str]:
    ex = get_extractor(ExtractParams.from_dict(params))
    return process_job(ex, FeatureStore.open(store_root), job, debug_dir)


def _run_pool(
    jobs: list[Job], params: ExtractParams, store: FeatureStore, workers: int, debug_dir: str | None
) -> Iterable[tuple[str, str, int, str]]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    init = (params.to_dict(), str(store.root), debug_dir)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        pending = {pool.submit(_worker_job, j): j for j in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                job = pending.pop(f)
                try:
                    yield f.result()
                except Exception as e:  # a worker died (e.g. killed by the OS)
                    store.write_failure(job.key, f"worker crashed: {type(e).__name__}: {e}", {"video": job.path})
                    yield job.key, "failed", 0, str(e)


def _run_ray(
    jobs: list[Job], params: ExtractParams, store: FeatureStore, workers: int, retries: int, debug_dir: str | None
) -> Iterable[tuple[str, str, int, str]]:
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs the optional extra: pip install 'microaction[ray]'") from None
    if not ray.is_initialized():
        kw: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
        if not os.environ.get("RAY_ADDRESS"):
            kw.update(num_cpus=max(1, workers), include_dashboard=False)
        ray.init(**kw)
    task = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(_ray_job)
    p = params.to_dict()
    pending = {task.remote(p, str(store.root), j, debug_dir): j for j in jobs}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            job = pending.pop(ref)
            try:
                yield ray.get(ref)
            except Exception as e:  # the task failed after its retries (worker lost)
                store.write_failure(job.key, f"ray task failed: {type(e).__name__}: {e}", {"video": job.path})
                yield job.key, "failed", 0, str(e)


def run_extraction(
    jobs: Sequence[Job],
    params: ExtractParams,
    out: str | os.PathLike[str],
    *,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    ray: bool = False,
    retries: int = 2,
    retry_failed: bool = False,
    debug_crops: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_result: Callable[[str, str], None] | None = None,
) -> RunSummary:
    """Extract ``jobs`` (this shard of them) into the store at ``out``; returns the summary."""
    extractor = get_extractor(params)
    manifest = extractor.manifest()
    manifest.params["data_source"] = data_source(jobs, params.parser)
    if (Path(out) / "manifest.json").is_file():
        check_same_params(FeatureStore.open(out).manifest, manifest, str(out))
    store = FeatureStore.create(out, manifest)
    mine = shard_jobs(jobs, *shard)
    summary = RunSummary(total=len(mine))
    todo = []
    for j in mine:
        st = store.status(j.key)
        if st is not None and (
            (st.get("status") in READABLE_STATUSES and store.is_done(j.key))
            or (st.get("status") == "people" and params.people == "all")
            or (st.get("status") == "failed" and not retry_failed)
        ):
            summary.skipped += 1
            if st.get("status") == "failed":
                summary.failed_before[j.key] = str(st.get("error", ""))
        else:
            todo.append(j)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="video", file=sys.stderr, dynamic_ncols=True, disable=None)
    dbg = str(debug_crops) if debug_crops else None
    if ray:
        results: Iterable[tuple[str, str, int, str]] = _run_ray(todo, params, store, workers, retries, dbg)
    elif workers > 1 and len(todo) > 1:
        results = _run_pool(todo, params, store, workers, dbg)
    else:
        results = run_pipelined(extractor, store, todo, dbg)
    written = []
    for key, status, frames, err in results:
        if status in READABLE_STATUSES:
            written.append(key)
        if status == "ok":
            summary.done += 1
            summary.frames += frames
        elif status == "no_person":
            summary.no_person += 1
            summary.no_person_keys.append(key)
            summary.frames += frames
        else:
            summary.failed += 1
            summary.errors[key] = err
        if on_result is not None:
            on_result(key, status)
        if bar is not None:
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(
                f"{summary.done / dt:.2f} videos/s, {summary.frames / dt:.1f} frames/s, {summary.failed} failed"
            )
            bar.update(1)
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    _run_report(store, written, summary)
    return summary
