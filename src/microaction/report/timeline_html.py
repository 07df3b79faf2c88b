"""``timeline.html``: one self-contained page per recording (no external file but the video).

One lane per body group (or per class; per person and body group in a recording of several
people), overlapping segments of a lane stacked in sub-rows;
each segment is a box coloured by its score (viridis ramp, legend on top) and labelled with
its class when wide enough; hovering shows class, body group, score, times and the routing over
body regions; zoom buttons widen the track for long recordings. When the recording's video file
is reachable from the page (``video_src``, relative to the page), a player sits above the lanes:
the playhead follows it, and a click on a segment or the track seeks it. The page exposes
``window.timeline = {setTime, seek, duration, zoom}`` (used by the tests).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from microaction.report.timeline_rows import TimelineRow, assign_lanes, lane_groups
from microaction.taxonomy import Taxonomy

__all__ = ["score_colour", "write_timeline_html"]

# viridis at 0, .25, .5, .75, 1 (matplotlib's values): dark = low score, yellow = high
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
_ROW = 22  # px per sub-row


def score_colour(score: float) -> str:
    """Hex colour of a score in [0, 1] on the viridis ramp (clipped outside)."""
    x = min(max(float(score), 0.0), 1.0) * (len(_RAMP) - 1)
    i = min(int(x), len(_RAMP) - 2)
    f = x - i
    rgb = (round(a + (b - a) * f) for a, b in zip(_RAMP[i], _RAMP[i + 1]))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _clock(t: float) -> str:
    m, s = divmod(max(t, 0.0), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def _ticks(duration: float) -> list[float]:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 12:
            break
    n = int(duration // step)
    return [k * step for k in range(n + 1)]


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} .small{font-size:12px;color:#666}
#player{display:block;max-width:720px;max-height:400px;margin:10px 0;background:#000}
#legend{display:flex;align-items:center;gap:8px;font-size:12px;margin:8px 0}
#ramp{width:200px;height:10px;border:1px solid #ccc}
#controls button{font-size:12px;margin-right:4px}
#tl{display:flex;border:1px solid #ddd;margin-top:6px}
#names{flex:0 0 150px;border-right:1px solid #ddd;background:#fafafa}
#names div{font-size:12px;padding:0 6px;box-sizing:border-box;border-bottom:1px solid #eee;overflow:hidden;
 white-space:nowrap;text-overflow:ellipsis}
#scroll{flex:1 1 auto;overflow-x:auto;position:relative}
#inner{position:relative;width:100%;min-width:100%}
.axis{position:relative;height:20px;border-bottom:1px solid #ddd;font-size:10px;color:#666}
.tick{position:absolute;top:0;height:20px;border-left:1px solid #ccc;padding-left:2px;white-space:nowrap}
.tick.end{border-left:none;border-right:1px solid #ccc;padding-left:0;padding-right:2px}
.lane{position:relative;border-bottom:1px solid #eee;cursor:pointer}
.seg{position:absolute;height:18px;margin-top:2px;min-width:2px;border-radius:2px;box-sizing:border-box;
 font-size:10px;line-height:18px;padding:0 2px;overflow:hidden;white-space:nowrap;color:#fff;
 outline:1px solid rgba(0,0,0,.15)}
.seg.light{color:#222} .seg:hover{outline:2px solid #d33;z-index:2}
#playhead{position:absolute;top:0;bottom:0;width:0;border-left:2px solid #d33;pointer-events:none;z-index:3}
#tip{position:fixed;display:none;background:#fff;border:1px solid #999;box-shadow:0 2px 6px rgba(0,0,0,.2);
 padding:6px 8px;font-size:12px;pointer-events:none;z-index:10;max-width:320px}
#tip table{border-collapse:collapse;margin-top:4px} #tip td{padding:0 4px}
#tip .bar{display:inline-block;height:8px;background:#3b528b}
"""

_JS = """
(function(){
const data = JSON.parse(document.getElementById('tl-data').textContent);
const inner = document.getElementById('inner'), scroll = document.getElementById('scroll');
const head = document.getElementById('playhead'), tip = document.getElementById('tip');
const video = document.getElementById('player');
const D = data.duration;
let zoomLevel = 1;
const esc = x => String(x).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
function clock(t){const m=Math.floor(t/60), s=(t-60*m).toFixed(1); return m+':'+(s<10?'0':'')+s;}
function setTime(t){
  head.style.left = (100*Math.min(Math.max(t,0),D)/D) + '%';
  head.dataset.t = t.toFixed(3);
  const x = inner.clientWidth*t/D;
  if (x < scroll.scrollLeft || x > scroll.scrollLeft + scroll.clientWidth) scroll.scrollLeft = x - scroll.clientWidth/4;
}
function seek(t){
  if (video && video.readyState > 0) video.currentTime = t;
  setTime(t);
}
function zoom(z){zoomLevel = Math.max(1, Math.min(z, 512)); inner.style.width = (100*zoomLevel)+'%';
  document.getElementById('zoomlabel').textContent = zoomLevel+'x';}
document.getElementById('zin').onclick = () => zoom(zoomLevel*2);
document.getElementById('zout').onclick = () => zoom(zoomLevel/2);
inner.addEventListener('click', e => {
  const seg = e.target.closest('.seg');
  if (seg) { seek(data.segments[+seg.dataset.i].start); return; }
  const r = inner.getBoundingClientRect(); seek(D*(e.clientX-r.left)/r.width);
});
inner.addEventListener('mousemove', e => {
  const seg = e.target.closest('.seg');
  if (!seg) { tip.style.display='none'; return; }
  const s = data.segments[+seg.dataset.i];
  let h = (s.person ? esc(s.person)+': ' : '') + '<b>'+esc(s.name)+'</b>' + (s.body ? ' &middot; '+esc(s.body) : '') + '<br>score '+s.score.toFixed(3)
        + '<br>'+clock(s.start)+' &ndash; '+clock(s.end)+' ('+(s.end-s.start).toFixed(2)+' s)';
  if (s.routing) {
    h += '<table>' + Object.entries(s.routing).sort((a,b)=>b[1]-a[1]).map(([k,v]) =>
      '<tr><td>'+esc(k)+'</td><td>'+v.toFixed(2)+'</td><td><span class="bar" style="width:'+Math.round(60*v)+'px"></span></td></tr>'
    ).join('') + '</table>';
  }
  tip.innerHTML = h; tip.style.display = 'block';
  tip.style.left = Math.min(e.clientX+12, window.innerWidth-330)+'px'; tip.style.top = (e.clientY+12)+'px';
});
inner.addEventListener('mouseleave', () => { tip.style.display='none'; });
if (video) {
  const follow = () => setTime(video.currentTime);
  ['timeupdate','seeked','loadedmetadata'].forEach(ev => video.addEventListener(ev, follow));
  const loop = () => { if (!video.paused) { follow(); requestAnimationFrame(loop); } };
  video.addEventListener('play', () => requestAnimationFrame(loop));
  video.addEventListener('error', () => { document.getElementById('novideo').style.display='block'; });
}
window.timeline = {setTime, seek, zoom, duration: D};
setTime(0);
})();
"""


def _tick(t: float, duration: float) -> str:
    """One axis tick: its label right of its line, or near the right edge (the last tenth of the
    track, where a label would run past the end and be cut off) left of it."""
    x = 100 * t / duration
    if x > 90:
        return f'<div class="tick end" style="right:{100 - x:.4f}%">{_clock(t)}</div>'
    return f'<div class="tick" style="left:{x:.4f}%">{_clock(t)}</div>'


def _light(colour: str) -> bool:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b > 150


def write_timeline_html(
    path: str | os.PathLike[str],
    rows: Sequence[TimelineRow],
    taxonomy: Taxonomy,
    regions: Sequence[str],
    *,
    video: str,
    video_src: str | None,
    duration: float,
    lanes: str = "body",
    people: Sequence[str] = (),
) -> Path:
    """Write the page (see the module docstring); ``lanes`` = ``body`` or ``class``; ``people``:
    lanes for these people also without a segment."""
    path = Path(path)
    by_class = lanes == "class" or not taxonomy.has_body
    groups = lane_groups(rows, taxonomy, by_class=by_class, people=people)
    placed = [replace(r, body="") for r in rows] if by_class else list(rows)  # class lanes: no body group
    key = [r.group for r in placed]
    sub = assign_lanes(placed)
    depth = {g: 1 for g in groups}
    for g, k in zip(key, sub):
        depth[g] = max(depth[g], k + 1)
    segs_by_group: dict[str, list[str]] = {g: [] for g in groups}
    data = []
    for i, (r, g, k) in enumerate(zip(rows, key, sub)):
        colour = score_colour(r.score)
        left, width = 100 * r.start / duration, 100 * (r.end - r.start) / duration
        cls = "seg light" if _light(colour) else "seg"
        segs_by_group[g].append(
            f'<div class="{cls}" data-i="{i}" style="left:{left:.4f}%;width:{width:.4f}%;top:{k * _ROW}px;'
            f'background:{colour}" title="{html.escape(r.name)} {r.score:.2f}">{html.escape(r.name)}</div>'
        )
        data.append(
            {"name": r.name, "body": r.body, "score": r.score, "start": r.start, "end": r.end, "routing": r.routing,
             "person": r.person}
        )  # fmt: skip
    names = "".join(
        f'<div style="height:{depth[g] * _ROW}px;line-height:{_ROW}px" title="{html.escape(g)}">{html.escape(g)}</div>'
        for g in groups
    )
    lanes_html = "".join(
        f'<div class="lane" data-lane="{html.escape(g)}" style="height:{depth[g] * _ROW}px">{"".join(segs_by_group[g])}</div>'
        for g in groups
    )
    ticks = "".join(_tick(t, duration) for t in _ticks(duration))
    ramp = ",".join(score_colour(x / 10) for x in range(11))
    player = ""
    if video_src is not None:
        src = html.escape(Path(video_src).as_posix(), quote=True)
        player = (
            f'<video id="player" src="{src}" controls preload="metadata"></video>'
            '<p id="novideo" class="small" style="display:none">The video file was not found beside this page '
            f"({html.escape(video_src)}); the timeline works without it.</p>"
        )
    payload = json.dumps({"duration": duration, "video": video, "regions": list(regions), "segments": data})
    payload = payload.replace("</", "<\\/")  # no "</script>" inside the data block
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Timeline: {html.escape(video)}</title>
<style>{_CSS}</style></head><body>
<h1>Timeline: {html.escape(video)}</h1>
<p class="small">{len(rows)} segments &middot; {_clock(duration)} &middot; label set {html.escape(taxonomy.name)}
&middot; lanes by {"class" if lanes == "class" or not taxonomy.has_body else "body group"}
&middot; regions {html.escape(", ".join(regions)) or "none"}</p>
{player}
<div id="legend"><span>score 0</span><span id="ramp" style="background:linear-gradient(to right,{ramp})"></span>
<span>1</span><span id="controls"><button id="zout">&minus;</button><button id="zin">+</button>
<span id="zoomlabel">1x</span></span></div>
<div id="tl"><div id="names"><div style="height:20px"></div>{names}</div>
<div id="scroll"><div id="inner"><div class="axis">{ticks}</div>{lanes_html}<div id="playhead"></div></div></div></div>
<div id="tip"></div>
<script type="application/json" id="tl-data">{payload}</script>
<script>{_JS}</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
