"""Timeline outputs: CSV / JSON rows, the ELAN file read back with pympi, the HTML page in Chromium."""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pympi
import pytest
from PIL import Image

from microaction.data.readers.segments import Detection
from microaction.report.timeline import write_timeline
from microaction.report.timeline_html import score_colour
from microaction.report.timeline_rows import assign_lanes, timeline_rows
from microaction.taxonomy import load_taxonomy

MA52 = load_taxonomy("ma52")
IMIGUE = load_taxonomy("imigue")
REGIONS = ("head", "body", "upper_limbs", "lower_limbs")


def _dets(video: str = "interview.webm") -> list[Detection]:
    n = MA52.index
    return [
        Detection(video, 0.2, 0.9, n("nodding"), 0.91, (0.7, 0.1, 0.1, 0.1)),
        Detection(video, 0.5, 1.4, n("turning head"), 0.55, (0.6, 0.2, 0.1, 0.1)),  # overlaps: same group
        Detection(video, 1.0, 1.8, n("shaking legs"), 0.32, (0.05, 0.05, 0.1, 0.8)),
        Detection(video, 1.2, 1.9, n("scratching or touching face"), 0.12, None),
    ]


def _video(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    """A tiny VP8 WebM (Chromium decodes it without proprietary codecs)."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libvpx", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((48, 64, 3), (i * 12) % 256, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def test_rows_csv_json(tmp_path: Path) -> None:
    paths = write_timeline(_dets(), tmp_path / "tl", MA52, REGIONS, duration=3.0)
    assert set(paths) == {"csv", "json", "eaf", "html"} and all(p.is_file() for p in paths.values())
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "video",
        "start",
        "end",
        "class_id",
        "class",
        "body",
        "score",
        *(f"routing_{r}" for r in REGIONS),
    ]
    assert [(r["class"], r["body"], r["score"]) for r in rows] == [
        ("nodding", "head", "0.9100"),
        ("turning head", "head", "0.5500"),
        ("shaking legs", "lower_limb", "0.3200"),
        ("scratching or touching face", "head_hand", "0.1200"),
    ]
    assert rows[2]["routing_lower_limbs"] == "0.8000" and rows[3]["routing_head"] == ""
    doc = json.loads(paths["json"].read_text())
    assert doc["video"] == "interview.webm" and doc["duration"] == 3.0 and doc["regions"] == list(REGIONS)
    assert doc["segments"][0]["routing"] == {"head": 0.7, "body": 0.1, "upper_limbs": 0.1, "lower_limbs": 0.1}
    assert doc["segments"][3]["routing"] is None


def test_eaf_reads_back(tmp_path: Path) -> None:
    video = _video(tmp_path / "interview.webm")
    paths = write_timeline(_dets(), tmp_path / "out", MA52, REGIONS, video)
    eaf = pympi.Elan.Eaf(str(paths["eaf"]))
    tiers = eaf.get_tier_names()
    # every body group has a tier; the two overlapping head segments need a second head tier
    assert set(tiers) == {*MA52.body_names, "head 2"}
    assert sorted(eaf.get_annotation_data_for_tier("head")) == [(200, 900, "nodding (0.91)")]
    assert sorted(eaf.get_annotation_data_for_tier("head 2")) == [(500, 1400, "turning head (0.55)")]
    assert eaf.get_annotation_data_for_tier("lower_limb") == [(1000, 1800, "shaking legs (0.32)")]
    assert eaf.get_annotation_data_for_tier("body") == []
    media = eaf.media_descriptors[0]
    assert media["MEDIA_URL"] == video.resolve().as_uri() and media["RELATIVE_MEDIA_URL"] == "../interview.webm"
    assert media["MIME_TYPE"] == "video/webm"
    doc = json.loads(paths["json"].read_text())
    assert doc["video_file"] == "../interview.webm" and doc["duration"] == pytest.approx(2.0)


def test_no_body_level_uses_class_tiers(tmp_path: Path) -> None:
    dets = [Detection("v", 1, 2, 5, 0.8), Detection("v", 3, 4, 31, 0.4)]  # cover face, illustrative
    paths = write_timeline(dets, tmp_path, IMIGUE, (), duration=5)
    eaf = pympi.Elan.Eaf(str(paths["eaf"]))
    assert set(eaf.get_tier_names()) == {"cover face", "illustrative"}
    assert 'data-lane="cover face"' in paths["html"].read_text()


def test_lanes_never_overlap() -> None:
    rng = random.Random(0)
    dets = []
    for _ in range(300):
        a = rng.uniform(0, 100)
        dets.append(Detection("v", a, a + rng.uniform(0.1, 10), rng.randrange(52), rng.random()))
    rows = timeline_rows(dets, MA52, ())
    lanes = assign_lanes(rows)
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if rows[i].group == rows[j].group and lanes[i] == lanes[j]:
                assert rows[i].end <= rows[j].start or rows[j].end <= rows[i].start
    # greedy partitioning uses as many sub-lanes as the deepest overlap needs
    for g in {r.group for r in rows}:
        pts = sorted([(r.start, 1) for r in rows if r.group == g] + [(r.end, -1) for r in rows if r.group == g])
        deepest = max(np.cumsum([d for _, d in pts]))
        assert max(k for r, k in zip(rows, lanes) if r.group == g) + 1 == deepest


def test_timeline_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one recording"):
        write_timeline([Detection("a", 0, 1, 0, 0.5), Detection("b", 0, 1, 0, 0.5)], tmp_path, MA52, REGIONS)
    with pytest.raises(ValueError, match="3 routing weights"):
        write_timeline([Detection("a", 0, 1, 0, 0.5, (1, 0, 0))], tmp_path, MA52, REGIONS)
    with pytest.raises(ValueError, match="out of range"):
        write_timeline([Detection("a", 0, 1, 60, 0.5)], tmp_path, MA52, REGIONS)
    with pytest.raises(FileNotFoundError):
        write_timeline([], tmp_path, MA52, REGIONS, tmp_path / "missing.mp4")
    paths = write_timeline([], tmp_path / "empty", MA52, REGIONS)  # nothing detected is a valid timeline
    assert json.loads(paths["json"].read_text())["segments"] == []


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


def test_routing_columns_only_for_a_detector_with_routing(tmp_path: Path) -> None:
    from dataclasses import replace

    plain = [replace(d, routing=None) for d in _dets()]  # tridet: no routing at all
    header = _csv_header(write_timeline(plain, tmp_path / "a", MA52, REGIONS, duration=3.0)["csv"])
    assert header == ["video", "start", "end", "class_id", "class", "body", "score"]
    # a routed detector (bmoe_tridet) keeps its columns, also when no segment passed --min-score
    header = _csv_header(write_timeline([], tmp_path / "b", MA52, REGIONS, duration=3.0, routing=True)["csv"])
    assert header[-4:] == [f"routing_{r}" for r in REGIONS]
    header = _csv_header(write_timeline(plain, tmp_path / "c", MA52, REGIONS, duration=3.0, routing=False)["csv"])
    assert not [c for c in header if c.startswith("routing_")]


@pytest.mark.parametrize("duration", [2.0, 2.05, 24.149, 60.0, 3599.0])
def test_axis_labels_stay_inside_the_track(tmp_path: Path, duration: float) -> None:
    """No tick label of the time axis runs past the track's right edge (where it was cut off)."""
    page = write_timeline(_dets(), tmp_path, MA52, REGIONS, duration=duration)["html"].read_text()
    ticks = re.findall(r'<div class="tick( end)?" style="(left|right):([-\d.]+)%">([^<]+)</div>', page)
    assert len(ticks) >= 2 and ticks[0][3] == "0:00.0"
    track = 600.0  # px: the track of a narrow window
    for end, side, pos, label in ticks:
        width = 100 * (6.5 * len(label) + 3) / track  # % of the track: 10 px digits, padding and line
        x = float(pos) if side == "left" else 100 - float(pos)  # the tick's place
        lo, hi = (x, x + width) if side == "left" else (x - width, x)
        assert 0 <= lo and hi <= 100, (label, side, pos)
        assert (side == "right") == (end == " end")


def test_score_colours_are_a_ramp() -> None:
    assert score_colour(0) == "#440154" and score_colour(1) == "#fde725"
    assert score_colour(-3) == score_colour(0) and score_colour(0.5) == "#21918c"


_PROBE = """<script>
window.addEventListener('load', () => {
  const out = {};
  const segs = [...document.querySelectorAll('.seg')];
  const inner = document.getElementById('inner').getBoundingClientRect();
  out.segs = segs.map(s => { const b = s.getBoundingClientRect();
    return [s.closest('.lane').dataset.lane, Math.round(b.left - inner.left), Math.round(b.width),
            Math.round(b.top), getComputedStyle(s).backgroundColor]; });
  out.innerWidth = Math.round(inner.width);
  const b = segs[2].getBoundingClientRect();
  segs[2].dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: b.left + 2, clientY: b.top + 2}));
  const tip = document.getElementById('tip');
  out.tip = tip.innerText; out.tipShown = tip.style.display;
  const v = document.getElementById('player');
  const done = () => { const p = document.createElement('pre'); p.id = 'probe';
    p.textContent = JSON.stringify(out); document.body.appendChild(p); };
  const head = document.getElementById('playhead');
  const at = () => Math.round(head.getBoundingClientRect().left - inner.left);
  if (!v) { window.timeline.setTime(1.5); out.head = at(); done(); return; }
  const go = () => {
    out.readyState = v.readyState; out.videoDuration = v.duration;
    v.addEventListener('seeked', () => { out.seekedAt = v.currentTime; out.headT = +head.dataset.t; out.head = at(); done(); },
                       {once: true});
    v.currentTime = 1.5;
  };
  if (v.readyState > 0) go(); else { v.addEventListener('loadedmetadata', go, {once: true});
    v.addEventListener('error', () => { out.error = true; done(); }); }
});
</script>"""


def _chromium_dom(chromium: str, page: Path, tmp_path: Path) -> dict:
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"]  # fmt: skip
    # the video's events come on the wall clock, not on the virtual one: on a busy machine the
    # first budget can run out before the seek is done, so a second, longer one is tried
    for budget in (10000, 40000):
        res = subprocess.run([*flags, f"--virtual-time-budget={budget}", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout)
        if m:
            break
    assert m, f"no probe in Chromium's DOM dump; stderr: {res.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_chromium_timeline_hover_and_playhead_follow_the_video(chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    video = _video(out / "interview.webm")  # beside the page
    paths = write_timeline(_dets(), out, MA52, REGIONS, video)
    info = _chromium_dom(chromium, paths["html"], tmp_path)
    w = info["innerWidth"]
    segs = {lane: [] for lane, *_ in info["segs"]}
    for lane, left, width, top, colour in info["segs"]:
        segs[lane].append((left, width, top, colour))
    assert len(info["segs"]) == 4 and set(segs) == {"head", "lower_limb", "head_hand"}
    # positions follow the times (duration 2 s): nodding 0.2-0.9 s
    nod = [s for s in segs["head"] if abs(s[0] - 0.1 * w) <= 2]
    assert nod and abs(nod[0][1] - 0.35 * w) <= 2
    # the two overlapping head segments are stacked, not drawn over each other
    assert len({t for *_, t, _ in segs["head"]}) == 2
    # colour by score: the 0.91 segment is yellow-green, the 0.12 one dark
    assert segs["head_hand"][0][3] != nod[0][3]
    # hover shows class, score, times and routing
    assert info["tipShown"] == "block"
    assert "shaking legs" in info["tip"] and "score 0.320" in info["tip"] and "0:01.0" in info["tip"]
    assert "lower_limbs" in info["tip"] and "0.80" in info["tip"]
    # the playhead follows the video: seek to 1.5 s of 2 s
    assert (
        info.get("error") is None and info["readyState"] > 0 and info["videoDuration"] == pytest.approx(2.0, abs=0.15)
    )
    assert info["headT"] == pytest.approx(info["seekedAt"], abs=0.05)
    assert abs(info["head"] - w * info["seekedAt"] / 2.0) <= 3


def test_chromium_screenshot_shows_coloured_segments(chromium: str, tmp_path: Path) -> None:
    paths = write_timeline(_dets("v.mp4"), tmp_path / "o", MA52, REGIONS, duration=2.0)
    shot = tmp_path / "shot.png"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,500"]  # fmt: skip
    res = subprocess.run([*flags, f"--screenshot={shot}", "--virtual-time-budget=3000", paths["html"].as_uri()],
                         capture_output=True, text=True, timeout=90)  # fmt: skip
    assert shot.is_file(), res.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # the 0.91 segment's viridis colour (#d1e21b-ish yellow-green) appears in a visible block
    target = np.array([int(score_colour(0.91)[i : i + 2], 16) for i in (1, 3, 5)])
    close = (np.abs(px - target).sum(axis=2) < 30).sum()
    assert close > 0.35 * 1150 * 14 * 0.8, close  # ~35 % of the track width x the segment height


def test_several_people_get_lanes_of_their_own(tmp_path: Path) -> None:
    """Per person and body group: a person column, ELAN tiers and page lanes per person (also for
    a person with no segment), in person order."""
    from dataclasses import replace

    dets = [replace(d, person="person 1") for d in _dets()[:2]] + [replace(_dets()[2], person="person 0")]
    people = ["person 0", "person 1", "person 10"]
    paths = write_timeline(dets, tmp_path / "tl", MA52, REGIONS, duration=3.0, people=people)
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["video", "person", "start"]
    assert [(r["person"], r["class"]) for r in rows] == [
        ("person 1", "nodding"), ("person 1", "turning head"), ("person 0", "shaking legs")
    ]  # fmt: skip
    doc = json.loads(paths["json"].read_text())
    assert doc["people"] == people and doc["segments"][2]["person"] == "person 0"
    eaf = pympi.Elan.Eaf(str(paths["eaf"]))
    tiers = set(eaf.get_tier_names())
    assert {f"{p}: {g}" for p in people for g in MA52.body_names} <= tiers
    assert "person 1: head 2" in tiers  # person 1's two head segments overlap
    assert eaf.get_annotation_data_for_tier("person 0: lower_limb") == [(1000, 1800, "shaking legs (0.32)")]
    assert eaf.get_annotation_data_for_tier("person 0: head") == []
    page = paths["html"].read_text()
    lanes = re.findall(r'data-lane="([^"]+)"', page)
    assert lanes[: len(MA52.body_names)] == [f"person 0: {g}" for g in MA52.body_names]
    assert lanes[-1] == f"person 10: {MA52.body_names[-1]}" and len(lanes) == 3 * len(MA52.body_names)
    # one person: no person column, lanes as before
    with write_timeline(_dets(), tmp_path / "one", MA52, REGIONS, duration=3.0)["csv"].open() as f:
        assert "person" not in next(csv.reader(f))
