"""Body parsers: frames (or files beside the video) → per-frame keypoints and region masks.

``make_parser(name, **options)`` builds a backend by name: ``mediapipe`` (default, CPU),
``sapiens`` (TorchScript part segmentation), ``keypoints`` (precomputed OpenPose JSON / skeleton
CSV / npz), ``groundtruth`` (the synthetic generator's sidecars).
"""

from __future__ import annotations

from typing import Any

from microaction.extract.parsers.base import VISIBLE, ParseError, Parser, ParseResult, interpolate_gaps

__all__ = ["PARSERS", "VISIBLE", "ParseError", "ParseResult", "Parser", "interpolate_gaps", "make_parser"]

PARSERS = ("mediapipe", "sapiens", "keypoints", "groundtruth")


def make_parser(name: str, **options: Any) -> Parser:
    """Build a parser by name; ``options`` are the backend's keyword arguments."""
    if name == "mediapipe":
        from microaction.extract.parsers.mediapipe import MediaPipeParser

        return MediaPipeParser(**options)
    if name == "sapiens":
        from microaction.extract.parsers.sapiens import SapiensParser

        return SapiensParser(**options)
    if name == "keypoints":
        from microaction.extract.parsers.keypoints import KeypointsParser

        return KeypointsParser(**options)
    if name == "groundtruth":
        from microaction.extract.parsers.groundtruth import GroundTruthParser

        return GroundTruthParser(**options)
    raise ValueError(f"unknown parser {name!r}; choose from {', '.join(PARSERS)}")
