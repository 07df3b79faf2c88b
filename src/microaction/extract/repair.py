"""Re-extract the damaged items of a feature store (``mar extract --verify STORE --repair``).

A damaged item (``FeatureStore.verify``: a missing, cut or altered ``items/<key>.npz``) is
extracted again from its video with the parameters in the store's manifest, so the repaired
item matches its neighbours. The video is the one given by ``--videos`` (matched by store key)
or the path its status record holds; an item whose video cannot be found is left as it is.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from microaction.data.store import FeatureStore
from microaction.extract.jobs.job_list import Job, collect_jobs
from microaction.extract.jobs.runner import run_extraction
from microaction.extract.pipeline import get_extractor, params_from_manifest

__all__ = ["recorded_job", "repair_items"]

_WINDOW = re.compile(r"@(\d*)-(\d*)$")


def recorded_job(key: str, status: dict) -> Job | None:
    """The job an item was extracted from, as its status record tells (None: no video recorded)."""
    video = status.get("video")
    if not video:
        return None
    start, end = status.get("start"), status.get("end")
    m = _WINDOW.search(key)
    if start is None and end is None and m:  # records from before start/end were stored
        start = int(m.group(1)) if m.group(1) else None
        end = int(m.group(2)) if m.group(2) else None
    return Job(key, str(video), start, end)


def repair_items(
    store: FeatureStore,
    keys: list[str],
    *,
    videos: str | os.PathLike[str] | None = None,
    video_root: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """Re-extract ``keys``; returns key -> the new status (``ok``, ``no_person``, ``failed: ...``)
    or why it was not tried (``not repaired: ...``)."""
    params = params_from_manifest(store.manifest)
    if device:
        params = dataclasses.replace(params, device=device)
    given = {j.key: j for j in collect_jobs(videos, video_root)} if videos else {}
    statuses = store.statuses()
    needs_video = get_extractor(params).needs_pixels
    out: dict[str, str] = {}
    jobs: list[Job] = []
    for key in keys:
        job = given.get(key) or recorded_job(key, statuses.get(key, {}))
        if job is None:
            out[key] = "not repaired: no video recorded for it (give --videos)"
        elif needs_video and not Path(job.path).is_file():
            out[key] = f"not repaired: video {job.path} not found (give --videos)"
        else:
            jobs.append(job)
    for job in jobs:  # forget the damaged entry so that the run extracts it again
        store.forget(job.key)
    if jobs:
        summary = run_extraction(jobs, params, store.root, progress=progress)
        done = {k: f"failed: {e.splitlines()[0] if e else ''}" for k, e in summary.errors.items()}
        for job in jobs:
            st = FeatureStore.open(store.root).status(job.key) or {}
            out[job.key] = done.get(job.key) or str(st.get("status", "failed"))
    return out
