"""The one planner of extraction jobs (``extract.jobs.plan.plan_job``): clip, stream, people or
people streamed, from the job and the parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from extract_helpers import write_recording
from microaction.extract.jobs.job_list import Job
from microaction.extract.jobs.plan import Kind, plan_job
from microaction.extract.parsers.base import ParseError
from microaction.extract.pipeline import Extractor, ExtractParams

FPS = 15
T = 180  # 12 s


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A 12-second rendered recording with its ground-truth keypoints beside it."""
    return write_recording(tmp_path_factory.mktemp("plan"), T, FPS)


def _pixels(**kw) -> Extractor:
    return Extractor(ExtractParams(parser="mediapipe", encoders=["motion"], **kw))


@pytest.mark.parametrize(
    "people, stream_after, kind",
    [
        ("main", 60.0, Kind.CLIP),
        ("main", 5.0, Kind.STREAM),
        ("all", 60.0, Kind.PEOPLE),
        ("all", 5.0, Kind.PEOPLE_STREAM),
    ],
)
def test_pixels_planned_from_people_and_the_containers_length(recording: Path, people, stream_after, kind) -> None:
    plan = plan_job(_pixels(people=people, stream_after=stream_after), Job("rec", str(recording)))
    assert plan.kind is kind and plan.target is None
    assert plan.parsed == []  # a video's length is its container's: nothing decoded to plan it
    assert (kind.people, kind.streamed) == (people == "all", stream_after < 12.0)


def test_the_jobs_window_is_its_length(recording: Path) -> None:
    ex = _pixels(stream_after=5.0)
    assert plan_job(ex, Job("rec", str(recording), 0, 60)).kind is Kind.CLIP  # 4 s of the 12
    assert plan_job(ex, Job("rec", str(recording), 30, 120)).kind is Kind.STREAM  # 6 s
    # a file the container reader cannot open goes the clip way, which reports it
    assert plan_job(ex, Job("gone", str(recording.parent / "gone.mp4"))).kind is Kind.CLIP


def test_a_person_box_plans_that_person(recording: Path) -> None:
    job = Job("rec#0", str(recording), boxes=((5, 1.0, 2.0, 30.0, 40.0),))
    plan = plan_job(_pixels(), job)
    assert plan.kind is Kind.PEOPLE and list(plan.target or {}) == [5]
    assert (plan.target or {})[5].tolist() == [1.0, 2.0, 30.0, 40.0]
    assert plan_job(_pixels(stream_after=5.0), job).kind is Kind.PEOPLE_STREAM
    # one video's features (``extract_video``): its main person, whatever the parameters say
    one = plan_job(_pixels(people="all"), job, people=False)
    assert one.kind is Kind.CLIP and one.target is None


def test_keypoints_alone_are_planned_on_their_own_length(recording: Path) -> None:
    ex = Extractor(ExtractParams(parser="groundtruth", encoders=["pose"], stream_after=5.0))
    assert not ex.needs_pixels
    long = plan_job(ex, Job("rec", str(recording)))
    # read once to know the length, and kept for the path that follows
    assert long.kind is Kind.STREAM and [pid for pid, _ in long.parsed] == [None]
    assert len(long.parsed[0][1].timestamps) == T
    short = plan_job(ex, Job("rec", str(recording), 0, 60))
    assert short.kind is Kind.CLIP and len(short.parsed[0][1].timestamps) == 60


def test_refused_plans_say_why(recording: Path) -> None:
    with pytest.raises(ValueError, match="people without a box"):
        plan_job(_pixels(), Job("rec", str(recording), tracks=True))
    plan_job(_pixels(people="all"), Job("rec", str(recording), tracks=True))  # track numbers: --people all
    ex = Extractor(ExtractParams(parser="groundtruth", encoders=["pose"], people="all"))
    with pytest.raises(ParseError, match="need the mediapipe or keypoints parser, not 'groundtruth'"):
        plan_job(ex, Job("rec", str(recording)))
