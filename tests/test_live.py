"""``mar live``: a rendered synthetic recording stands in for a camera (played through a pipe at
its own rate: the code path of ``-`` and network streams), a tiny trained detector on it.

Events against the offline detector on the same recording, the look-ahead's promise, frames
dropped (not waited for) behind a slow model, Ctrl-C writing the timeline, and a failing
stream ending non-zero after its reconnects."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from extract_helpers import train_tiny_detector

VIDEO = "rec_test_000"
KEY = f"videos__{VIDEO}"
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """(run, store, video, the video as MPEG-TS): a bmoe_tridet trained briefly on tiny recordings."""
    root = tmp_path_factory.mktemp("live")
    run, store, video = train_tiny_detector(
        root, VIDEO, ["run.epochs=2", "detection.windows_per_epoch=16", "run.batch_size=8"]
    )
    ts = root / f"{VIDEO}.ts"
    _remux(video, ts)
    return run, store, video, ts


def _remux(src: Path, dst: Path, seconds: float | None = None) -> None:
    """The video's packets in MPEG-TS (a container that streams: a pipe can carry it)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", format="mpegts") as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.dts is None or (seconds is not None and p.pts is not None and p.pts * s.time_base > seconds):
                continue
            p.stream = out
            o.mux(p)


def _play(ts: Path, pipe: IO[bytes], seconds: float) -> threading.Thread:
    """Write ``ts`` into ``pipe`` at the rate of its ``seconds`` of video (a camera's pace); the
    caller closes the pipe (``communicate``) after joining the thread."""
    data = ts.read_bytes()

    def run() -> None:
        step = max(1, len(data) // max(1, round(seconds * 20)))
        t0 = time.monotonic()
        try:
            for k in range(0, len(data), step):
                wait = t0 + seconds * k / len(data) - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                pipe.write(data[k : k + step])
                pipe.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def _mar_live(args: list[str], wait: bool = True) -> subprocess.Popen[bytes]:
    """``mar live`` in a process of its own; ``wait``: until it reads its source (as a camera
    would start sending then: frames written before would arrive at once)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "microaction.cli", "live", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    if wait:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert line.startswith("live: reading"), line
    return proc


def _tiou(a, b) -> float:  # type: ignore[no-untyped-def]
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    return inter / (max(a.end, b.end) - min(a.start, b.start))


def test_live_events_match_the_offline_detector(
    detector: tuple[Path, Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv

    from microaction.data.standardize import FeatureStats
    from microaction.data.store import FeatureStore
    from microaction.engine.detection import detect_recording, load_detector, recording_from_item
    from microaction.live import LiveOptions, SourceSpec, WindowSettings, run_live
    from microaction.live.features import LiveFeatures

    waited: list[float] = []  # per batch of steps: its last frame's time past the last step's bin
    ready = LiveFeatures.ready

    def timed(self: LiveFeatures, ended: bool = False, hop: float = 0.0):  # type: ignore[no-untyped-def]
        got = ready(self, ended, hop)
        if got is not None and not ended:
            waited.append(self.frames[-1].t - (float(got.times[-1]) + 0.5 / self.rate))
        return got

    monkeypatch.setattr(LiveFeatures, "ready", timed)

    run, store, video, _ = detector
    settings = WindowSettings(window=32.0, lookahead=1.5, min_score=0.0, rank=False)  # every candidate, as offline
    horizon = [0.0]
    seen: list[tuple[float, float]] = []  # (event end, horizon when it was emitted)
    encoded: list[np.ndarray] = []

    def on_steps(steps) -> None:  # type: ignore[no-untyped-def]
        horizon[0] = float(steps.times[-1]) + 0.5 / 6.0
        encoded.append(steps.regions)

    def on_event(rec: dict) -> None:  # type: ignore[type-arg]
        seen.append((rec["end"], horizon[0]))

    opts = LiveOptions(SourceSpec(str(video)), tmp_path / "out", settings, events=str(tmp_path / "events.jsonl"),
                       parse_from=str(video))  # fmt: skip
    res = run_live(run, opts, on_event=on_event, on_steps=on_steps)
    assert res.status == 0 and res.stats["frames_dropped"] == 0
    ref = FeatureStore.open(store).read(KEY)
    assert res.stats["steps"] == ref.length  # the same feature grid as the store's
    # ... and the same features: each frame's pose centred on the seconds before it in both
    live_regions = np.concatenate(encoded, axis=1)
    assert np.allclose(live_regions, ref.regions.astype(np.float32), rtol=2e-3, atol=2e-3)
    # ... each as soon as its windows are final: the pose encoder's 4-frame windows tile the
    # steps' bins (24 fps, 6 steps/s) and its differences read 2 frames on, so 1 frame past the bin
    assert waited and max(waited) <= 1 / 24 + 1e-3, max(waited)
    # each event was final: the stream reached its end + the look-ahead (the last run, at the
    # source's end, finalises the rest)
    last = max(h for _, h in seen)
    assert all(end <= h - settings.lookahead + 1e-3 for end, h in seen if h < last)
    assert sum(h < last for _, h in seen) >= len(seen) // 2  # most came before the end
    # one event per action: no two of one class overlap much
    ev = res.events
    assert not any(a.label == b.label and _tiou(a, b) >= 0.5 for i, a in enumerate(ev) for b in ev[i + 1 :])
    # the offline detector on the stored features finds what the live one found
    loaded = load_detector(run)
    rec = recording_from_item(VIDEO, ref, where="test", stats=FeatureStats.from_meta(loaded.meta))
    offline = sorted(detect_recording(loaded.model, rec), key=lambda d: -d.score)[:10]
    hits = [any(e.label == d.label and _tiou(e, d) >= 0.5 for e in ev) for d in offline]
    assert sum(hits) >= 7, hits
    # the JSON lines, the timeline and the overlay
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(lines) == len(ev)
    keys = {"start", "end", "class_id", "class", "body", "score", "routing", "emitted", "emitted_unix"}
    assert keys <= set(lines[0]) and set(lines[0]["routing"]) == {"head", "body", "upper_limbs", "lower_limbs"}
    with (tmp_path / "out" / "timeline.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == len(ev)
    for name in ("timeline.json", "timeline.eaf", "timeline.html", "live.json"):
        assert (tmp_path / "out" / name).is_file()


def test_pipe_at_camera_pace_and_ctrl_c(detector: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    """``-``: a container stream on standard input, written at the video's own rate; events on
    standard output as they come; Ctrl-C (SIGINT) ends the session with the timeline written."""
    import av

    run, _, video, ts = detector
    out = tmp_path / "out"
    proc = _mar_live([str(run), "-", "--parse-from", str(video), "--out", str(out), "--min-score", "0",
                      "--lookahead", "1", "--overlay", str(tmp_path / "overlay.mp4")])  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    _play(ts, proc.stdin, 24.0)
    line = proc.stdout.readline()  # an event while the recording still plays
    if not line.startswith(b"{"):
        proc.kill()
        pytest.fail(f"not an event: {line!r}; stderr: {proc.communicate()[1].decode()[-2000:]}")
    first = json.loads(line)
    assert first["video"] == "stdin" and first["end"] < 20.0
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    stdout = proc.stdout.read()  # the rest (communicate would lose what readline buffered)
    stderr = proc.stderr.read() if proc.stderr is not None else b""
    with contextlib.suppress(OSError):  # the session has gone: what the player still holds goes nowhere
        proc.stdin.close()
    assert proc.returncode == 0, stderr.decode()
    stats = json.loads((out / "live.json").read_text())
    # stopped mid-stream, after the first event's end and its look-ahead had come
    assert stats["kind"] == "stdin" and stats["stopped"] and first["end"] + 1.0 - 1e-3 <= stats["stream_seconds"] < 20.0
    assert stats["frames_dropped"] == 0 and stats["frames_sampled"] >= 24 * first["end"]
    lines = stdout.decode().splitlines()
    bad = [x for x in lines if not x.startswith("{")]
    assert not bad, (bad[:3], stderr.decode()[-2000:])
    events = [first] + [json.loads(x) for x in lines]
    rows = json.loads((out / "timeline.json").read_text())["segments"]
    assert len(rows) == len(events) == stats["events"]
    for name in ("timeline.csv", "timeline.eaf", "timeline.html"):
        assert (out / name).is_file()
    with av.open(str(tmp_path / "overlay.mp4")) as c:  # every frame seen, drawn
        assert sum(1 for _ in c.decode(video=0)) == stats["frames_parsed"] > 0


def test_slow_model_drops_frames_without_stalling_the_reader(
    detector: tuple[Path, Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import microaction.live.detector as live_detector
    from microaction.live import LiveOptions, SourceSpec, WindowSettings, run_live

    run, _, video, _ = detector
    real = live_detector.detect_recording

    def slow(*a, **k):  # type: ignore[no-untyped-def]
        time.sleep(1.5)  # the session defers runs while frames wait, up to a second of steps
        return real(*a, **k)

    monkeypatch.setattr(live_detector, "detect_recording", slow)
    short = tmp_path / "short.ts"
    _remux(video, short, seconds=3.0)
    spec = SourceSpec(str(short), realtime=True, queue_size=8)
    t0 = time.monotonic()
    res = run_live(run, LiveOptions(spec, tmp_path / "out", WindowSettings(min_score=0.0), events=os.devnull,
                                    parse_from=str(video), hop=0.25))  # fmt: skip
    s = res.stats
    assert res.status == 0
    assert s["frames_dropped"] > 10  # the model took more than the stream's time
    assert s["frames_sampled"] >= 70  # the reader read every frame, at the video's pace
    assert s["frames_sampled"] - s["frames_dropped"] > 0 and s["steps"] > 0
    assert time.monotonic() - t0 < 30


def test_a_failing_stream_ends_non_zero_after_its_reconnects(
    detector: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    """A TCP stream that sends three seconds and goes away: reconnects, gives up, exit 1, and what
    it sent is in the timeline."""
    run, _, video, _ = detector
    part = tmp_path / "part.ts"
    _remux(video, part, seconds=3.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        server.close()  # later connections are refused
        conn.sendall(part.read_bytes())
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    out = tmp_path / "out"
    proc = _mar_live([str(run), f"tcp://127.0.0.1:{port}", "--format", "mpegts", "--parse-from", str(video),
                      "--out", str(out), "--min-score", "0", "--reconnect", "2", "--timeout", "2", "--quiet"], wait=False)  # fmt: skip
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr.decode()
    stats = json.loads((out / "live.json").read_text())
    assert stats["status"] == "failed" and stats["reconnects"] == 2 and "gave up" in stats["error"]
    assert stats["frames_sampled"] >= 60 and stats["steps"] > 0
    assert (out / "timeline.html").is_file() and (out / "timeline.csv").is_file()


def test_a_missing_file_fails(detector: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    from microaction.cli import main

    run, _, video, _ = detector
    argv = ["live", str(run), str(tmp_path / "none.mp4"), "--parse-from", str(video), "--out", str(tmp_path / "o"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 1
    assert json.loads((tmp_path / "o" / "live.json").read_text())["frames_decoded"] == 0


def test_online_sampling_keeps_the_frames_offline_sampling_keeps() -> None:
    from microaction.extract.video import Sampling
    from microaction.live.source import _Sampler

    for src_fps, fps in ((25.0, 24.0), (30.0, 24.0), (24.0, 24.0), (60.0, 10.0), (30.0, 7.3)):
        times = np.arange(int(src_fps * 5)) / src_fps
        want = Sampling(fps=fps).select(times)
        s = _Sampler(fps, 1)
        got = [i for i, t in enumerate(times) if s.feed(i, float(t), 1.0 / src_fps)]
        # the same count; the same frames but where two frames tie for a grid point
        assert abs(len(got) - len(want)) <= 1 and np.mean(np.isin(got, want)) > 0.7, (src_fps, fps)


def test_people_all_on_a_real_clip(detector: tuple[Path, Path, Path, Path], shared: Path, tmp_path: Path) -> None:
    """``--people all``: every person MediaPipe finds gets features, detector, events and lanes of
    its own (one seated person in an MA-52 clip: ``person 0``)."""
    from microaction.cli import main

    run = detector[0]
    clip = tmp_path / "clip.ts"
    _remux(sorted((shared / "ma52" / "demo_clips").glob("*.mp4"))[0], clip, seconds=0.8)  # a short test
    out, events = tmp_path / "out", tmp_path / "events.jsonl"
    argv = ["live", str(run), str(clip), "--parser", "mediapipe", "--people", "all", "--out", str(out),
            "--events", str(events), "--min-score", "0", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    stats = json.loads((out / "live.json").read_text())
    assert stats["people"] == ["person 0"] and stats["steps"] > 0
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert lines and {e["person"] for e in lines} == {"person 0"}
    assert json.loads((out / "timeline.json").read_text())["people"] == ["person 0"]


def test_a_candidate_whose_end_moves_back_across_the_cut_is_emitted_once() -> None:
    from microaction.data.readers.segments import Detection
    from microaction.live.detector import Finaliser, WindowSettings

    def runs(reopen: float) -> list[list[tuple[float, float]]]:
        fin = Finaliser(WindowSettings(lookahead=0.5, reopen=reopen, min_score=0.1), 64.0, 0.5, None, None)
        out = []
        # one action seen by three runs: its end first just past the cut (9.6 > 10.0 - 0.5), then,
        # with more stream seen, just before the cut the first run already finalised (9.4 <= 9.5)
        for horizon, end in ((10.0, 9.6), (10.2, 9.4), (10.4, 9.45)):
            got = fin.take([Detection("v", 8.0, end, 1, 0.9), Detection("v", 2.0, 3.0, 2, 0.05)], horizon)
            out.append([(d.start, d.end) for d in got])
        return out

    assert runs(1.0) == [[], [(8.0, 9.4)], []]  # emitted late, once; the low score never
    assert runs(0.0) == [[], [], []]  # only the stretch between two cuts: the action is lost


def test_a_store_with_recordings_extracted_whole_is_flagged(tmp_path: Path) -> None:
    """A recording not longer than --stream-after is extracted whole, its pose centred on the whole
    recording; live features are centred on each frame's past: mar live says so."""
    from dataclasses import replace

    from microaction.data.store import FeatureStore, StoreManifest
    from microaction.extract.pipeline import ExtractParams
    from microaction.live.session import whole_recordings_warning

    FeatureStore.create(tmp_path, StoreManifest(["head"], 4, 4, "groundtruth", [], None))
    status = tmp_path / "status"
    status.mkdir(exist_ok=True)
    (status / "videos__a.json").write_text(json.dumps({"status": "ok", "chunks": 3, "feature_rate": 6.0}))
    params = ExtractParams(parser="groundtruth", encoders=["pose"])
    assert whole_recordings_warning(tmp_path, params) is None  # every recording streamed
    (status / "videos__b.json").write_text(json.dumps({"status": "ok", "frames": 145}))
    said = whole_recordings_warning(tmp_path, params)
    assert said is not None and "1 of 2 recordings" in said and "--stream-after 0" in said
    assert whole_recordings_warning(tmp_path, replace(params, centre_seconds=0.0)) is None  # chunk medians
    assert whole_recordings_warning(tmp_path / "elsewhere", params) is None  # the store is not here
