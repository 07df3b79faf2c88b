"""Encoders: region clips / keypoints → ``[T', D]`` feature sequences per stream.

``make_encoder(name, **options)``: ``motion`` (CPU, no weights), ``pose`` (keypoints only),
``videomae`` (transformers VideoMAE from a local checkpoint directory).
"""

from __future__ import annotations

from typing import Any

from microaction.extract.encoders.base import Encoded, Encoder, EncoderInput, resample, windows

__all__ = ["ENCODERS", "Encoded", "Encoder", "EncoderInput", "make_encoder", "resample", "windows"]

ENCODERS = ("motion", "pose", "videomae")


def make_encoder(name: str, **options: Any) -> Encoder:
    if name == "motion":
        from microaction.extract.encoders.motion import MotionEncoder

        return MotionEncoder(**options)
    if name == "pose":
        from microaction.extract.encoders.pose import PoseEncoder

        return PoseEncoder(**options)
    if name == "videomae":
        from microaction.extract.encoders.videomae import VideoMAEEncoder

        return VideoMAEEncoder(**options)
    raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")
