"""Timeline rows: detected segments with names resolved for people, and their lanes.

Shared by the file writers (``timeline.py``) and the HTML page (``timeline_html.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from microaction.data.segments import Detection
from microaction.taxonomy import Taxonomy

__all__ = ["TimelineRow", "assign_lanes", "lane_groups", "timeline_rows"]


@dataclass(frozen=True)
class TimelineRow:
    """One detected segment, with names resolved for people."""

    video: str
    start: float
    end: float
    label: int
    name: str
    body: str  # body group name ("" for a label set without a body level)
    score: float
    routing: dict[str, float] | None  # region -> weight

    @property
    def group(self) -> str:
        """The lane / tier the segment belongs to: its body group, or its class without one."""
        return self.body or self.name


def timeline_rows(detections: Sequence[Detection], taxonomy: Taxonomy, regions: Sequence[str]) -> list[TimelineRow]:
    """Rows in time order (then score, highest first); checks labels and routing lengths."""
    rows = []
    for d in detections:
        if not 0 <= d.label < taxonomy.num_classes:
            raise ValueError(f"detection {d}: label {d.label} out of range for taxonomy {taxonomy.name}")
        if not d.end > d.start:
            raise ValueError(f"detection {d}: end must be after start")
        routing = None
        if d.routing is not None:
            if len(d.routing) != len(regions):
                raise ValueError(f"detection {d}: {len(d.routing)} routing weights for regions {list(regions)}")
            routing = {r: float(w) for r, w in zip(regions, d.routing)}
        body = taxonomy.body_names[int(taxonomy.body_of(d.label))] if taxonomy.has_body else ""
        rows.append(
            TimelineRow(
                d.video,
                float(d.start),
                float(d.end),
                int(d.label),
                taxonomy.names[d.label],
                body,
                float(d.score),
                routing,
            )
        )
    return sorted(rows, key=lambda r: (r.video, r.start, -r.score, r.end, r.label))


def assign_lanes(rows: Sequence[TimelineRow]) -> list[int]:
    """Sub-lane of each row within its group so that no two rows of one sub-lane overlap
    (greedy interval partitioning in time order; segments that only touch share a sub-lane)."""
    ends: dict[str, list[float]] = {}
    out = [0] * len(rows)
    for i in sorted(range(len(rows)), key=lambda i: (rows[i].start, rows[i].end)):
        r = rows[i]
        lanes = ends.setdefault(r.group, [])
        for k, end in enumerate(lanes):
            if end <= r.start:
                lanes[k] = r.end
                out[i] = k
                break
        else:
            lanes.append(r.end)
            out[i] = len(lanes) - 1
    return out


def lane_groups(rows: Sequence[TimelineRow], taxonomy: Taxonomy) -> list[str]:
    """Lane / tier names in a stable order: every body group of the taxonomy, else the classes seen."""
    if taxonomy.has_body:
        return list(taxonomy.body_names)
    seen = {r.label for r in rows}
    return [taxonomy.names[c] for c in sorted(seen)]
