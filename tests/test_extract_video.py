"""PyAV decoding: containers, frame rates, sampling, windows; broken videos are recorded as
failed and the run goes on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from extract_helpers import write_video
from microaction.data.store import FeatureStore
from microaction.extract.jobs.job_list import collect_jobs
from microaction.extract.jobs.runner import run_extraction
from microaction.extract.pipeline import ExtractParams
from microaction.extract.video import Sampling, VideoError, probe, read_video


def _frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    f = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        f[i, :, (i * 3) % w : (i * 3) % w + 8] = 255  # a moving bar
    return f


@pytest.mark.parametrize(
    ("name", "codec", "fps"),
    [
        ("a.mp4", "libx264", 25),
        ("b.avi", "mpeg4", 12),
        ("c.mkv", "libx264", 50),
        ("d.webm", "libvpx-vp9", 24),
        ("e.gif", "gif", 10),
    ],
)
def test_containers_and_frame_rates(tmp_path: Path, name: str, codec: str, fps: int) -> None:
    p = tmp_path / name
    write_video(p, _frames(20), fps, codec)
    v = read_video(p, Sampling(max_side=0))
    assert v.frames.shape == (20, 48, 64, 3) and v.frames.dtype == np.uint8
    np.testing.assert_allclose(np.diff(v.timestamps), 1 / fps, atol=0.011)  # gif delays are in 1/100 s
    assert probe(p).width == 64


def test_sampling(tmp_path: Path) -> None:
    p = tmp_path / "v.mp4"
    write_video(p, _frames(40), 20)
    assert read_video(p, Sampling(stride=4)).indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]
    assert read_video(p, Sampling(num_frames=5)).indices.tolist() == [0, 10, 20, 29, 39]
    assert read_video(p, Sampling(start=10, end=20, stride=3)).indices.tolist() == [10, 13, 16, 19]
    v = read_video(p, Sampling(fps=5))
    assert v.indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]
    np.testing.assert_allclose(v.timestamps[1], 0.2, atol=1e-3)
    assert read_video(p, Sampling(max_side=32)).frames.shape[1:] == (24, 32, 3)
    with pytest.raises(VideoError, match="no frame in the requested window"):
        read_video(p, Sampling(start=100, end=120))
    with pytest.raises(ValueError):
        Sampling(stride=0)


def test_broken_videos_are_recorded_and_the_run_goes_on(tmp_path: Path, shared: Path) -> None:
    d = tmp_path / "videos"
    d.mkdir()
    shutil.copy(shared / "imigue" / "demo_clips" / "folding-arms.gif", d / "good.gif")
    (d / "empty.mp4").write_bytes(b"")
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    real = (shared / "ma52" / "demo_clips" / "B1_nodding.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(real[: len(real) // 3])  # index at the end: unreadable
    write_video(tmp_path / "fs.mp4", np.random.default_rng(1).integers(0, 255, (40, 48, 64, 3), dtype=np.uint8), 30,
                options={"movflags": "faststart"})  # fmt: skip
    fs = (tmp_path / "fs.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(fs[: len(fs) // 2])  # index first: decodes part of the frames
    out = tmp_path / "store"
    s = run_extraction(collect_jobs(d), ExtractParams(num_frames=6), out, progress=False)
    assert (s.done, s.failed) == (1, 4)
    store = FeatureStore.open(out)
    assert store.keys() == ["good"]
    fails = store.failures()
    assert set(fails) == {"empty", "corrupt", "truncated", "cut"}
    assert "empty file" in fails["empty"] and "VideoError" in fails["corrupt"] and "truncated" in fails["cut"]
    # a re-run skips them all; --retry-failed tries the failed ones again
    s2 = run_extraction(collect_jobs(d), ExtractParams(num_frames=6), out, progress=False)
    assert (s2.done, s2.skipped, s2.failed) == (0, 5, 0)
    s3 = run_extraction(collect_jobs(d), ExtractParams(num_frames=6), out, progress=False, retry_failed=True)
    assert (s3.skipped, s3.failed) == (1, 4)


def test_manifest_windows_and_keys(tmp_path: Path) -> None:
    write_video(tmp_path / "vids" / "long.mp4", _frames(30), 30)
    (tmp_path / "m.csv").write_text("video,label,start,end\nvids/long.mp4,0,0,10\nvids/long.mp4,1,10,30\n")
    jobs = collect_jobs(tmp_path / "m.csv")
    assert [j.key for j in jobs] == ["vids__long@0-10", "vids__long@10-30"]
    assert jobs[1].start == 10 and Path(jobs[1].path).is_file()
    with pytest.raises(FileNotFoundError):
        collect_jobs(tmp_path / "nothing")
