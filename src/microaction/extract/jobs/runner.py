"""Many videos into a feature store: worker processes, Ray, progress, the run's summary.

The unit of work is one job (``execute.process_job``): extract, write the item, write its status
(the commit record). Any error becomes a ``failed`` status with the message, and the run goes on.
A video in which no body region was seen (no person found, or too briefly) is stored with the
status ``no_person`` and counted apart: training refuses it unless the config keeps it. Done
videos (ok or failed) are skipped on a re-run, so a killed run resumes where it stopped; writes
are atomic, so a SIGKILL leaves no torn entry.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microaction.data.store import READABLE_STATUSES, FeatureStore, StoreManifest, StoreMismatch
from microaction.extract.jobs.execute import finish_job, process_job, read_job
from microaction.extract.jobs.job_list import Job, data_source, shard_jobs
from microaction.extract.pipeline import LEGACY_PARAMS, Extractor, ExtractParams, get_extractor

__all__ = ["RunSummary", "check_same_params", "run_extraction", "run_pipelined"]


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
    # a parameter added after the store was made: the value that store was made with
    for k, v in LEGACY_PARAMS.items():
        if k not in a:
            a[k] = v
            if b.get(k, v) != v:
                flag = "--" + k.replace("_", "-")
                hint += (
                    f"\n  (the store was made before {k}: continue it with {flag} {v:g}, or extract into a new store)"
                )
    # ... and one at its default, that changes nothing that store holds
    defaults = ExtractParams().to_dict()
    b = {k: v for k, v in b.items() if k in a or v != defaults.get(k)}
    diffs = [
        f"{k}: store has {a.get(k)!r}, this run {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    ]
    if diffs:
        raise StoreMismatch(f"{source}: store was extracted with other parameters:\n  " + "\n  ".join(diffs) + hint)


def run_pipelined(
    extractor: Extractor, store: FeatureStore, jobs: Sequence[Job], debug_dir: str | None = None
) -> Iterator[tuple[str, str, int, str]]:
    """One process, two stages overlapped: while a thread encodes and writes video k, the caller's
    thread decodes and parses video k+1 (MediaPipe, PyAV and OpenCV release the GIL)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
        pending: Future | None = None
        for job in jobs:
            plan = read_job(extractor, job)
            fut = pool.submit(finish_job, extractor, store, job, plan, debug_dir)
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
