"""Several people in one video: per-frame person detections → identity-kept tracks.

A *detection* is one person in one frame: 33 MediaPipe landmarks in frame pixels (confidence 0
where unseen), its box, and optionally a person mask. ``PeopleTracker`` links detections frame by
frame into tracks (online, so the pixel person finder can ask where each person will be next):

- every live track predicts its box: its last centre moved by a smoothed velocity (constant
  velocity over the frames it was not seen), with the track's usual size (a running mean);
- the cost of giving detection d to track k is ``1 - (w_iou · IoU(pred_k, box_d) + (1 - w_iou) ·
  kp_sim)`` where ``kp_sim = exp(-mean(|Δ|²) / (2 σ²))`` over the landmarks seen in both, with
  ``Δ`` the landmark distance over the track's box size (an OKS-like similarity, σ =
  ``KP_SIGMA``); pairs with neither a box overlap nor a landmark agreement are not allowed;
  on pixels the torso's colour histogram (Bhattacharyya coefficient against the track's running
  mean) weighs ``W_APPEARANCE`` of the similarity (below ``MIN_LOOKS`` the pair is not allowed),
  so two people who cross are told apart by their clothes, not only by where they are;
- a Hungarian assignment (``scipy.optimize.linear_sum_assignment``) pairs tracks and detections at
  once, so two people crossing do not both go to the nearer track; leaving a track or a
  detection unpaired costs ``max_cost``, so no pair is forced;
- a track unseen for up to ``max_lost`` frames is kept (its box keeps moving with its velocity)
  and can take a detection again: a person hidden by another for a moment keeps its identity;
- a detection whose box is more than ``MAX_RESIZE`` times wider, narrower, taller or shorter than
  the track's usual size is not that person (two people mixed into one pose, or a part of one);
- a detection no track takes starts a new track, unless it lies inside a tracked person's box
  (``SAME_PERSON``); tracks seen in fewer than ``min_frames`` frames are dropped at the end.

``consolidate`` then keeps people that stay people (``--min-person-seconds``): a track that
starts where another one ended, after a gap the tracker could not bridge but shorter than the
floor (a pose estimator that loses a person for a moment, OpenPose above all), is the same
person and joins it; a track seen in fewer frames than the floor after that (OpenPose's short
spurious "people": a coat, a reflection) is dropped.

Tracks are numbered in order of first appearance, left to right among those that appear in the
same frame; the number is the ``person`` part of the store key ``video#person``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from microaction.extract.parsers.base import VISIBLE
from microaction.skeleton import NUM_LANDMARKS

__all__ = [
    "PeopleTracker",
    "PersonBox",
    "PersonTrack",
    "box_iou",
    "box_overlap",
    "consolidate",
    "keypoint_box",
    "pick_target",
    "score_tracking",
    "track_people",
]

KP_SIGMA = 0.15  # landmark distance scale, fraction of the person box's size
MAX_RESIZE = 1.5  # largest ratio of a detection's box width or height to the track's usual one
SIZE_SMOOTHING = 0.8  # the track's usual box size: running mean with this weight on the past
SAME_PERSON = 0.7  # a box this much inside another (share of the smaller) is the same person
W_APPEARANCE = 0.4  # weight of the torso colour similarity when both sides have one (pixels)
MIN_LOOKS = 0.25  # below this torso colour similarity a detection is not the track's person
MIN_SEEN = 4  # landmarks a detection needs to count as a person


@dataclass
class PersonBox:
    keypoints: np.ndarray  # [33, 3] frame pixels, confidence
    box: np.ndarray  # [4] xyxy frame pixels
    score: float = 1.0
    mask: np.ndarray | None = None  # [h, w] uint8 0/1 person mask (mask resolution), optional
    source_id: int | None = None  # identity given by the file (OpenPose person_id), if any
    appearance: np.ndarray | None = None  # colour histogram of the torso (pixels only), sums to 1


@dataclass
class PersonTrack:
    """One person over the clip: ``keypoints [T, 33, 3]`` (confidence 0 where unseen), ``boxes
    [T, 4]`` (NaN where unseen), ``masks [T, h, w]`` uint8 when the detections had masks."""

    id: int
    keypoints: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray | None = None

    @property
    def seen(self) -> np.ndarray:
        return np.isfinite(self.boxes).all(1)


def keypoint_box(kp: np.ndarray, thr: float = VISIBLE) -> np.ndarray | None:
    """Box ``[4]`` of the landmarks seen in one frame ``[33, 3]`` (None when fewer than MIN_SEEN)."""
    ok = kp[:, 2] >= thr
    if int(ok.sum()) < MIN_SEEN:
        return None
    xy = kp[ok, :2]
    return np.array([*xy.min(0), *xy.max(0)], dtype=np.float32)


def box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes ``[4]`` over the smaller one's area (1: one inside the other)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(max(w, 0) * max(h, 0) / small) if small > 0 else 0.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``[N, 4]`` × ``[M, 4]`` -> ``[N, M]`` (0 for NaN boxes)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return np.nan_to_num(out, nan=0.0)


@dataclass(eq=False)
class _Live:
    id: int
    box: np.ndarray  # last seen box
    kp: np.ndarray  # last seen keypoints
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # box centre px / frame
    last: int = 0  # frame last seen
    appearance: np.ndarray | None = None  # running mean of the detections' colour histograms
    frames: list[int] = field(default_factory=list)
    dets: list[PersonBox] = field(default_factory=list)

    size: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # running mean box (w, h)

    def predicted(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        shift = self.velocity * float(t - self.last)
        c = (self.box[:2] + self.box[2:]) / 2 + shift
        box = np.concatenate([c - self.size / 2, c + self.size / 2]).astype(np.float32)
        kp = self.kp.copy()
        kp[:, :2] += shift
        return box, kp


class PeopleTracker:
    """Online multi-person tracker (see the module docstring); ``update(t, detections)`` per frame,
    ``predicted_boxes(t)`` for the next frame's search regions, ``tracks(T)`` at the end."""

    def __init__(
        self,
        *,
        max_lost: int = 15,
        w_iou: float = 0.5,
        max_cost: float = 0.85,
        min_frames: int = 3,
        velocity_smoothing: float = 0.5,
    ) -> None:
        self.max_lost = int(max_lost)
        self.w_iou = float(w_iou)
        self.max_cost = float(max_cost)
        self.min_frames = int(min_frames)
        self.alpha = float(velocity_smoothing)
        self.live: list[_Live] = []
        self.ended: list[_Live] = []
        self._next = 0
        self._by_source: dict[int, _Live] = {}

    def _cost(self, t: int, tr: _Live, d: PersonBox) -> float:
        box, kp = tr.predicted(t)
        w0, h0 = max(float(box[2] - box[0]), 1.0), max(float(box[3] - box[1]), 1.0)
        w1, h1 = max(float(d.box[2] - d.box[0]), 1.0), max(float(d.box[3] - d.box[1]), 1.0)
        if max(w1 / w0, w0 / w1, h1 / h0, h0 / h1) > MAX_RESIZE:
            return np.inf  # a person does not change size that fast: two people mixed, or part of one
        iou = float(box_iou(box[None], d.box[None])[0, 0])
        both = (kp[:, 2] >= VISIBLE) & (d.keypoints[:, 2] >= VISIBLE)
        size = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
        if both.sum() >= 3:
            dist2 = float(np.mean(np.sum((kp[both, :2] - d.keypoints[both, :2]) ** 2, -1))) / size**2
            sim = float(np.exp(-dist2 / (2 * KP_SIGMA**2)))
        else:  # no landmark in common: the box centres' distance stands in
            c = np.linalg.norm((box[:2] + box[2:]) / 2 - (d.box[:2] + d.box[2:]) / 2) / size
            sim = float(np.exp(-(c**2) / (2 * (2 * KP_SIGMA) ** 2)))
        if iou < 0.05 and sim < 0.05:
            return np.inf
        motion = self.w_iou * iou + (1.0 - self.w_iou) * sim
        if tr.appearance is None or d.appearance is None:
            return 1.0 - motion
        looks = float(np.sum(np.sqrt(tr.appearance * d.appearance)))  # Bhattacharyya coefficient
        if looks < MIN_LOOKS:
            return np.inf  # other clothes: another person
        return 1.0 - ((1.0 - W_APPEARANCE) * motion + W_APPEARANCE * looks)

    def predicted_boxes(self, t: int) -> list[tuple[int, np.ndarray]]:
        """(track id, predicted box) of every live track at frame ``t``."""
        return [(tr.id, tr.predicted(t)[0]) for tr in self.live]

    def update(self, t: int, dets: list[PersonBox]) -> list[int]:
        """Assign frame ``t``'s detections; returns the track id of each detection."""
        from scipy.optimize import linear_sum_assignment

        self.ended += [tr for tr in self.live if t - tr.last > self.max_lost]
        self.live = [tr for tr in self.live if t - tr.last <= self.max_lost]
        ids = [-1] * len(dets)
        free = list(range(len(dets)))
        # identities the file gives (OpenPose person_id) are kept as they are
        for j, d in enumerate(dets):
            if d.source_id is not None and any(tr is self._by_source.get(d.source_id) for tr in self.live):
                tr = self._by_source[d.source_id]
                self._take(t, tr, d)
                ids[j] = tr.id
                free.remove(j)
        pool = [tr for tr in self.live if tr.last < t]
        if pool and free:
            cost = np.array([[self._cost(t, tr, dets[j]) for j in free] for tr in pool])
            # leaving a track or a detection unpaired costs max_cost: the assignment never pairs
            # A's detection with B's track just to pair everything
            n, m = cost.shape
            big = 1e6
            full = np.full((n + m, m + n), big)
            full[:n, :m] = np.where(cost <= self.max_cost, cost, big)
            full[np.arange(n), m + np.arange(n)] = self.max_cost
            full[n + np.arange(m), np.arange(m)] = self.max_cost
            full[n:, m:] = 0.0
            rows, cols = linear_sum_assignment(full)
            taken = []
            for r, c in zip(rows.tolist(), cols.tolist()):
                if r < n and c < m and cost[r, c] <= self.max_cost:
                    j = free[c]
                    self._take(t, pool[r], dets[j])
                    ids[j] = pool[r].id
                    taken.append(j)
            free = [j for j in free if j not in taken]
        # new people, numbered left to right; not where a tracked person is (a part of them, or
        # two people mixed into one detection)
        boxes = [tr.predicted(t)[0] for tr in self.live]
        free = [j for j in free if all(box_overlap(dets[j].box, b) <= SAME_PERSON for b in boxes)]
        for j in sorted(free, key=lambda j: float(dets[j].box[0] + dets[j].box[2])):
            tr = _Live(self._next, dets[j].box.astype(np.float32), dets[j].keypoints.astype(np.float32), last=t)
            tr.appearance = dets[j].appearance
            tr.size = (dets[j].box[2:] - dets[j].box[:2]).astype(np.float32)
            tr.frames.append(t)
            tr.dets.append(dets[j])
            self._next += 1
            self.live.append(tr)
            sid = dets[j].source_id
            if sid is not None:
                self._by_source[sid] = tr
            ids[j] = tr.id
        return ids

    def _take(self, t: int, tr: _Live, d: PersonBox) -> None:
        gap = max(1, t - tr.last)
        c_old = (tr.box[:2] + tr.box[2:]) / 2
        c_new = (d.box[:2] + d.box[2:]) / 2
        v = (c_new - c_old) / gap
        tr.velocity = (self.alpha * tr.velocity + (1 - self.alpha) * v).astype(np.float32)
        tr.box = d.box.astype(np.float32)
        tr.size = (SIZE_SMOOTHING * tr.size + (1 - SIZE_SMOOTHING) * (d.box[2:] - d.box[:2])).astype(np.float32)
        kp = d.keypoints.astype(np.float32).copy()
        unseen = kp[:, 2] < VISIBLE  # keep the last known position of landmarks not seen now
        kp[unseen, :2] = tr.kp[unseen, :2] + tr.velocity * gap
        tr.kp = kp
        if d.appearance is not None:
            a = d.appearance if tr.appearance is None else 0.9 * tr.appearance + 0.1 * d.appearance
            tr.appearance = a / max(float(a.sum()), 1e-9)
        tr.last = t
        tr.frames.append(t)
        tr.dets.append(d)

    def tracks(self, num_frames: int) -> list[PersonTrack]:
        """Every track seen in at least ``min_frames`` frames, renumbered 0.. in order of first
        appearance (left to right within a frame)."""
        every = [tr for tr in self.ended + self.live if len(tr.frames) >= self.min_frames]
        every.sort(key=lambda tr: (tr.frames[0], tr.id))
        out = []
        for new_id, tr in enumerate(every):
            kp = np.zeros((num_frames, NUM_LANDMARKS, 3), np.float32)
            boxes = np.full((num_frames, 4), np.nan, np.float32)
            masks = None
            first_mask = next((d.mask for d in tr.dets if d.mask is not None), None)
            if first_mask is not None:
                masks = np.zeros((num_frames, *first_mask.shape), np.uint8)
            for f, d in zip(tr.frames, tr.dets):
                kp[f] = d.keypoints
                boxes[f] = d.box
                if masks is not None and d.mask is not None and d.mask.shape == masks.shape[1:]:
                    masks[f] = d.mask
            out.append(PersonTrack(new_id, kp, boxes, masks))
        return out


STITCH_IOU = 0.3  # a track starting where another ended (IoU of the two boxes) continues it
STITCH_DISTANCE = 0.5  # ... or this close (box centres, × the larger box's longer side)


def _continues(a: PersonTrack, b: PersonTrack, max_gap: int) -> float | None:
    """How well ``b`` continues ``a`` (``a`` seen last before ``b`` is first seen, at most
    ``max_gap`` frames before): the gap in frames when the box where ``a`` was last is near the
    box where ``b`` is first, else None."""
    sa, sb = np.flatnonzero(a.seen), np.flatnonzero(b.seen)
    if not len(sa) or not len(sb) or not 0 < sb[0] - sa[-1] <= max_gap:
        return None
    ba, bb = a.boxes[sa[-1]], b.boxes[sb[0]]
    side = max(float(ba[2] - ba[0]), float(ba[3] - ba[1]), float(bb[2] - bb[0]), float(bb[3] - bb[1]), 1.0)
    dist = float(np.linalg.norm((ba[:2] + ba[2:]) / 2 - (bb[:2] + bb[2:]) / 2)) / side
    if float(box_iou(ba[None], bb[None])[0, 0]) < STITCH_IOU and dist > STITCH_DISTANCE:
        return None
    return float(sb[0] - sa[-1])


def consolidate(tracks: list[PersonTrack], min_frames: int) -> list[PersonTrack]:
    """People that stay people: each track that continues an earlier one within ``min_frames``
    (``_continues``; the nearest gap first) joins it, then tracks seen in fewer than
    ``min_frames`` frames are dropped; the rest are renumbered 0.. in order of first appearance
    (left to right within a frame)."""
    live = [tr for tr in tracks if tr.seen.any()]
    live.sort(key=lambda tr: int(np.argmax(tr.seen)))
    out: list[PersonTrack] = []
    for b in live:
        gaps = [(g, k) for k, a in enumerate(out) if (g := _continues(a, b, min_frames)) is not None]
        if not gaps:
            out.append(b)
            continue
        a = out[min(gaps)[1]]
        seen = b.seen
        a.keypoints[seen] = b.keypoints[seen]
        a.boxes[seen] = b.boxes[seen]
        if a.masks is not None and b.masks is not None and a.masks.shape == b.masks.shape:
            a.masks[seen] = b.masks[seen]
    kept = [tr for tr in out if int(tr.seen.sum()) >= min_frames]
    kept.sort(key=lambda tr: (int(np.argmax(tr.seen)), float(np.nanmean(tr.boxes[np.argmax(tr.seen)][[0, 2]]))))
    for i, tr in enumerate(kept):
        tr.id = i
    return kept


def track_people(frames: list[list[PersonBox]], **kwargs: float) -> list[PersonTrack]:
    """Offline: link per-frame detections ``frames[t]`` into tracks (``PeopleTracker`` options)."""
    tracker = PeopleTracker(**kwargs)  # type: ignore[arg-type]
    for t, dets in enumerate(frames):
        tracker.update(t, dets)
    return tracker.tracks(len(frames))


def pick_target(tracks: list[PersonTrack], boxes: dict[int, np.ndarray], *, min_iou: float = 0.1) -> int:
    """Index of the track that is the person in ``boxes`` ({frame: xyxy}): the highest mean IoU
    over the given frames (a frame where a track is not seen counts 0; when a box's own frame
    has no detection, the track's nearest seen frame within 5 frames stands in). Raises
    ``ValueError`` when no track overlaps the boxes by ``min_iou``."""
    if not tracks:
        raise ValueError("no person was found to match the annotation's person box")
    scores = np.zeros(len(tracks))
    for f, b in boxes.items():
        for k, tr in enumerate(tracks):
            T = len(tr.boxes)
            best = 0.0
            for df in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5):
                g = f + df
                if 0 <= g < T and tr.seen[g]:
                    best = float(box_iou(tr.boxes[g][None], b[None])[0, 0])
                    break
            scores[k] += best
    scores /= max(len(boxes), 1)
    k = int(np.argmax(scores))
    if scores[k] < min_iou:
        raise ValueError(
            f"no person found in the annotation's box (best overlap IoU {scores[k]:.2f} < {min_iou}; "
            f"{len(tracks)} people tracked)"
        )
    return k


def score_tracking(
    truth_boxes: np.ndarray,
    track_boxes: np.ndarray,
    action_windows: np.ndarray,
    *,
    min_iou: float = 0.3,
) -> dict[str, float]:
    """Tracks against a scene's ground truth.

    ``truth_boxes`` ``[M, T, 4]`` and ``track_boxes`` ``[N, T, 4]`` (NaN: not there) are matched
    frame by frame (Hungarian on IoU, pairs below ``min_iou`` unmatched). ``id_switches``: over
    every true person, how often its matched track changes from the one last matched. A true
    person's track is the one matched to it in most frames; an action ``(person k, frames
    action_windows[k])`` is ``attributed`` when the track matched to k in most of the action's
    frames is k's track, no other person has that track, and it is matched in at least half of
    the action's frames where k is visible. Returns counts: ``id_switches``, ``actions``,
    ``attributed``, ``matched_frames``, ``truth_frames``.
    """
    from scipy.optimize import linear_sum_assignment

    M, T = truth_boxes.shape[:2]
    N = track_boxes.shape[0]
    match = np.full((M, T), -1, np.int64)
    for f in range(T):
        gt = [k for k in range(M) if np.isfinite(truth_boxes[k, f]).all()]
        tr = [n for n in range(N) if np.isfinite(track_boxes[n, f]).all()]
        if not gt or not tr:
            continue
        iou = box_iou(truth_boxes[gt, f], track_boxes[tr, f])
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows.tolist(), cols.tolist()):
            if iou[r, c] >= min_iou:
                match[gt[r], f] = tr[c]
    switches = 0
    owner = np.full(M, -1, np.int64)
    for k in range(M):
        seq = match[k][match[k] >= 0]
        switches += int(np.count_nonzero(np.diff(seq)))
        if len(seq):
            owner[k] = int(np.bincount(seq).argmax())
    attributed = 0
    for k in range(M):
        a, b = (int(v) for v in action_windows[k])
        window = match[k, a:b]
        visible = np.isfinite(truth_boxes[k, a:b]).all(1)
        hits = window[window >= 0]
        if owner[k] < 0 or not len(hits) or int(np.sum(owner == owner[k])) > 1:
            continue
        if int(np.bincount(hits).argmax()) == owner[k] and np.sum(hits == owner[k]) >= 0.5 * max(visible.sum(), 1):
            attributed += 1
    return {
        "id_switches": float(switches),
        "actions": float(M),
        "attributed": float(attributed),
        "matched_frames": float(np.count_nonzero(match >= 0)),
        "truth_frames": float(np.isfinite(truth_boxes).all(-1).sum()),
    }
