"""Timeline rows: detected segments with names resolved for people, and their lanes.

Shared by the file writers (``timeline.py``) and the HTML page (``timeline_html.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from microaction.data.readers.segments import Detection
from microaction.taxonomy import Taxonomy

__all__ = ["TimelineRow", "assign_lanes", "lane_groups", "lane_people", "timeline_rows"]


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
    person: str = ""  # "person <id>" in a recording of several people ("" for one)

    @property
    def group(self) -> str:
        """The lane / tier the segment belongs to: its body group, or its class without one (each
        person's own, ``"person 1: head"``, in a recording of several people)."""
        base = self.body or self.name
        return f"{self.person}: {base}" if self.person else base


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
                d.person or "",
            )
        )
    return sorted(rows, key=lambda r: (r.video, r.start, -r.score, r.end, r.label, r.person))


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


def lane_groups(
    rows: Sequence[TimelineRow], taxonomy: Taxonomy, *, by_class: bool = False, people: Sequence[str] = ()
) -> list[str]:
    """Lane / tier names in a stable order: every body group of the taxonomy (``by_class`` or
    without a body level: the classes seen); per person, in person order, when rows name people
    (``people``: also those without a segment)."""
    if taxonomy.has_body and not by_class:
        base = list(taxonomy.body_names)
    else:
        base = [taxonomy.names[c] for c in sorted({r.label for r in rows})]
    who = lane_people(rows, people)
    return [f"{p}: {g}" for p in who for g in base] if who else base


def lane_people(rows: Sequence[TimelineRow], people: Sequence[str] = ()) -> list[str]:
    """The people named by the rows and ``people``, in person order ("person 2" before "person 10")."""
    return sorted({r.person for r in rows if r.person} | set(people), key=_person_order)


def _person_order(name: str) -> tuple[int, str]:
    tail = name.rsplit(" ", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (1 << 30, name)
