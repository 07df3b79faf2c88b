"""One job through its plan (``plan.plan_job``), in two stages a run overlaps (``runner``):
stage 1 plans and reads what the plan holds whole, stage 2 encodes (or streams) and writes the
item(s), or records the failure of either stage. ``extract_video``: one video outside a store.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from typing import Any

import numpy as np

from microaction.data.store import FeatureStore, StoreManifest
from microaction.extract.jobs.job_list import Job
from microaction.extract.jobs.people_stream import PersonStream, find_people_stream
from microaction.extract.jobs.plan import Kind, Plan, plan_job, read_whole
from microaction.extract.jobs.stream_chunks import WORK, discard_work, join, stream_recording, write_recording
from microaction.extract.parsers.base import VISIBLE
from microaction.extract.pipeline import (
    Extraction,
    Extractor,
    ExtractParams,
    Parsed,
    get_extractor,
    params_from_manifest,
)

__all__ = ["extract_video", "finish_job", "person_share", "process_job", "read_job"]


def person_share(keypoints: np.ndarray) -> float:
    """Share of frames in which the parser saw anyone (a landmark at or above ``VISIBLE``)."""
    kp = np.asarray(keypoints)
    if kp.ndim < 2 or kp.shape[0] == 0:
        return 0.0
    seen = (kp[..., 2] >= VISIBLE).reshape(kp.shape[0], -1).any(axis=1)
    return float(seen.mean())


def process_job(
    extractor: Extractor, store: FeatureStore, job: Job, debug_dir: str | os.PathLike[str] | None = None
) -> tuple[str, str, int, str]:
    """Extract one video into the store (and its debug crops when asked).
    Returns (key, "ok"|"no_person"|"failed", frames, error)."""
    return finish_job(extractor, store, job, read_job(extractor, job), debug_dir)


def read_job(extractor: Extractor, job: Job) -> Plan | BaseException:
    """Stage 1: the job's plan with what it holds whole read (a clip's parse, or each person's);
    an error is returned, for stage 2 to record."""
    try:
        plan = plan_job(extractor, job)
        if not plan.parsed and not plan.kind.streamed:
            plan.parsed = read_whole(extractor, job, plan)
        return plan
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        e.__dict__["_mar_traceback"] = traceback.format_exc() if os.environ.get("MAR_DEBUG") else ""
        return e


def finish_job(
    extractor: Extractor,
    store: FeatureStore,
    job: Job,
    plan: Plan | BaseException,
    debug_dir: str | os.PathLike[str] | None = None,
) -> tuple[str, str, int, str]:
    """Stage 2 of a job. Several people: one item per person (``key#id``; the annotation's person
    keeps ``key``), then the job's own status ``{"status": "people", "people": [keys]}`` as its
    commit record."""
    try:
        if isinstance(plan, BaseException):
            raise plan
        found_work = None
        people: list[tuple[int | None, Parsed | None, PersonStream | None]]
        if plan.kind is Kind.PEOPLE_STREAM and not plan.parsed:  # from pixels: every person found first
            found_work = f"{job.key}#people"  # pass 1's result, kept until the job is committed
            found = find_people_stream(extractor, job.path, job.start, job.end, store.root / WORK / found_work,
                                       target=plan.target)  # fmt: skip
            people = [(p.id, None, p) for p in found]
        else:
            people = [(pid, p, None) for pid, p in plan.parsed] or [(None, None, None)]
        keys, statuses, frames = [], [], 0
        for pid, parsed, person in people:
            key = job.key if (pid is None or job.boxes) else f"{job.key}#{pid}"
            keys.append(key)
            if not plan.kind.streamed:
                status, frames = _write_clip(extractor, store, job, key, pid, parsed, debug_dir)
                statuses.append(status)
                continue
            statuses.append("ok")
            if plan.kind.people and (store.status(key) or {}).get("status") == "ok" and store.is_done(key):
                continue  # a person committed before the run was killed
            # a long recording: chunk by chunk, resumable, written piece by piece
            chunks = stream_recording(extractor, store, key, job.path, job.start, job.end, parsed=parsed, person=person)
            info: dict[str, Any] = {"video": job.path, **({} if pid is None else {"person": pid})}
            if parsed is not None and parsed.parse.info.get("size_from"):
                info["size_from"] = parsed.parse.info["size_from"]
            frames = write_recording(extractor, store, key, chunks, info)
            discard_work(store, key)
        if plan.kind.people and not job.boxes:
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


def _write_clip(
    extractor: Extractor, store: FeatureStore, job: Job, key: str, pid: int | None, parsed: Parsed | None,
    debug_dir: str | os.PathLike[str] | None,
) -> tuple[str, int]:  # fmt: skip
    """One clip (or one person of it) encoded and written; returns its status and frames."""
    assert parsed is not None
    ex = extractor.encode(parsed, keep=bool(debug_dir))
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
    store.write(key, regions=ex.regions, global_=ex.global_, region_valid=ex.region_valid, timestamps=ex.timestamps,
                extras=ex.extras, info=info, status=status)  # fmt: skip
    if debug_dir:
        from microaction.extract.debug import write_debug_crops

        try:
            write_debug_crops(debug_dir, key, ex)
        except Exception as e:  # debug images never fail a run
            print(f"mar extract: debug crops for {key} failed: {e}", file=sys.stderr)
    return status, int(ex.info["frames"])


def extract_video(
    path: str | os.PathLike[str],
    params: ExtractParams | StoreManifest | None = None,
    *,
    start: int | None = None,
    end: int | None = None,
    keep: bool = False,
) -> Extraction:
    """Extract one video (its main person) as ``mar extract`` does: ``params`` an ``ExtractParams``,
    a store's manifest (its recorded parameters) or None (defaults). In one pass, or, when the plan
    streams it, chunk by chunk (the chunks in a temporary folder; ``keep`` then keeps nothing)."""
    if isinstance(params, StoreManifest):
        params = params_from_manifest(params)
    ex = get_extractor(params or ExtractParams())
    job = Job("video", str(path), start, end)
    plan = plan_job(ex, job, people=False)
    if not plan.kind.streamed:
        return ex.encode((plan.parsed or read_whole(ex, job, plan))[0][1], keep=keep)
    with tempfile.TemporaryDirectory(prefix="mar-stream-") as d:
        store = FeatureStore.create(d, ex.manifest())
        parsed = plan.parsed[0][1] if plan.parsed else None
        return join(ex, stream_recording(ex, store, "video", job.path, start, end, parsed=parsed))
