"""Live detection: micro-actions from a camera, a network stream, a file played in real time or a
pipe, as they happen (``mar live``; ``docs/detection.md``, section "Live")."""

from microaction.live.detector import LiveDetector, WindowSettings
from microaction.live.features import FrameParser, LiveFeatures, Steps
from microaction.live.session import LiveOptions, LiveResult, run_live
from microaction.live.source import SourceSpec, SourceStats, start_reader

__all__ = [
    "FrameParser",
    "LiveDetector",
    "LiveFeatures",
    "LiveOptions",
    "LiveResult",
    "SourceSpec",
    "SourceStats",
    "Steps",
    "WindowSettings",
    "run_live",
    "start_reader",
]
