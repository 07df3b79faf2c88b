"""Trackers on a grid of segments (``extract.jobs.segment_parsing``): each frame's result depends on its
segment and the warm-up before it only, whatever the number of threads; order, pass-through,
errors and early stops."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from microaction.extract.jobs.segment_parsing import WARMUP, parse_segments, resume_from

FPS = 10.0


class Counting:
    """A fake tracker: each result is (frames this session has seen, the frame's value)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.live = 0
        self.most = 0
        self.lock = threading.Lock()

    def session(self) -> Counting.Session:
        return Counting.Session(self)

    class Session:
        def __init__(self, owner: Counting) -> None:
            self.owner, self.seen = owner, 0
            with owner.lock:
                owner.live += 1
                owner.most = max(owner.most, owner.live)

        def step(self, frame: np.ndarray) -> tuple[int, int]:
            value = int(frame[0, 0, 0])
            if value == self.owner.fail_at:
                raise RuntimeError(f"tracker failed at frame {value}")
            self.seen += 1
            return self.seen, value

        def close(self) -> None:
            with self.owner.lock:
                self.owner.live -= 1


def frames(n: int, skip_before: float | None = None):
    for i in range(n):
        t = i / FPS
        if skip_before is not None and t < skip_before:
            yield i, t, None
        else:
            yield i, t, np.full((2, 2, 3), i % 256, np.uint8)


def expected(i: int, segment: float, first: int = 0) -> int:
    """Frames a fresh tracker of frame i's segment has seen by frame i (its warm-up included)."""
    t = i / FPS
    start = np.floor(t / segment) * segment - WARMUP
    return sum(1 for j in range(first, i + 1) if j / FPS >= start - 1e-9)


@pytest.mark.parametrize("segment", [0.5, 1.0, 3.0, 100.0])
def test_results_follow_the_segment_grid_for_any_number_of_workers(segment: float) -> None:
    n = 73
    runs = {}
    for workers in (1, 2, 3):
        got = list(parse_segments(Counting(), frames(n), segment, workers=workers))
        assert [g[0] for g in got] == list(range(n))  # every frame once, in order
        assert all(out[1] == i % 256 for i, _, _, out in got)  # each result is its own frame's
        runs[workers] = [out for *_, out in got]
    assert runs[1] == runs[2] == runs[3]
    assert [seen for seen, _ in runs[2]] == [expected(i, segment) for i in range(n)]


def test_a_resumed_run_gets_the_uninterrupted_results() -> None:
    n, segment = 60, 1.0
    whole = [out for *_, out in parse_segments(Counting(), frames(n), segment)]
    t_needed = 3.4
    skip = resume_from(t_needed, segment)
    assert skip == pytest.approx(3.0 - WARMUP)
    got = list(parse_segments(Counting(), frames(n, skip_before=skip), segment))
    assert all(f is None and out is None for _, t, f, out in got if t < skip - 1e-9)  # passed through
    for i, t, _, out in got:
        if t >= t_needed:
            assert out == whole[i]


def test_the_trackers_in_flight_are_bounded() -> None:
    p = Counting()
    for _ in parse_segments(p, frames(200), 1.0, workers=2):
        pass
    assert p.most == 2 and p.live == 0


def test_a_tracker_error_reaches_the_consumer_and_the_threads_end() -> None:
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="failed at frame 25"):
        for _ in parse_segments(Counting(fail_at=25), frames(80), 1.0, workers=2):
            pass
    gen = parse_segments(Counting(), frames(80), 1.0, workers=2)
    next(gen)
    gen.close()  # stopped early
    left = {t.name for t in threading.enumerate()} - before
    assert not [name for name in left if name.startswith("track-")]


def test_segment_must_be_positive() -> None:
    with pytest.raises(ValueError, match="segment must be > 0"):
        list(parse_segments(Counting(), frames(3), 0.0))
