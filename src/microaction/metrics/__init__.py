"""Metrics in one place: classification (``classification``: the official protocols of MA-52,
iMiGUE, SocialGesture and MPII-GI, Codabench submissions), temporal detection (``detection``:
MMA-52 / MAC mAP, online F1, 1-D NMS / Soft-NMS) and iMiGUE's MiGA submissions (``miga``).

``microaction.metrics`` itself gives the classification names, as it always has."""

from __future__ import annotations

from microaction.metrics import classification as _classification
from microaction.metrics.classification import *  # noqa: F403 (the names of its __all__, listed once there)

__all__ = list(_classification.__all__)
