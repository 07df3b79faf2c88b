"""Frame rates of the benchmarks' releases as data (``releases.yaml``): the rate of keypoint
files that carry none, by dataset name (``mar extract --keypoints-fps imigue``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

__all__ = ["release_fps", "release_names", "resolve_fps"]

_FILE = Path(__file__).resolve().parent / "releases.yaml"


@cache
def _releases() -> dict[str, dict[str, object]]:
    doc = yaml.safe_load(_FILE.read_text(encoding="utf-8")) or {}
    return {str(k).lower(): dict(v) for k, v in doc.items()}


def release_names() -> list[str]:
    return sorted(_releases())


def release_fps(name: str) -> float:
    """The frame rate a release's videos have (``ValueError`` naming the known ones otherwise)."""
    rel = _releases().get(name.strip().lower())
    if rel is None or "fps" not in rel:
        known = ", ".join(f"{n} ({_releases()[n]['fps']:g})" for n in release_names())  # type: ignore[str-format]
        raise ValueError(f"no frame rate known for {name!r}; give a number or one of: {known}")
    return float(rel["fps"])  # type: ignore[arg-type]


def resolve_fps(text: str | float | None) -> float | None:
    """``--keypoints-fps``: a number of frames per second, or a release's name (its rate)."""
    if text is None or isinstance(text, float | int):
        return None if text is None else float(text)
    try:
        value = float(text)
    except ValueError:
        return release_fps(text)
    if not value > 0:
        raise ValueError(f"--keypoints-fps {text!r}: a frame rate must be positive")
    return value
