"""Video → body parse → region clips → encoders → feature store.

``extract_video(path, params)`` (params: ``ExtractParams`` or a store's ``StoreManifest``) is the
library entry point; ``run_extraction`` drives a whole run (``mar extract``). Imported lazily so
that importing a submodule stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExtractParams", "Extraction", "Extractor", "extract_video", "params_from_manifest", "run_extraction"]


def __getattr__(name: str) -> Any:
    if name == "extract_video":  # one pass, or a long recording chunk by chunk
        from microaction.extract.stream import extract_video

        return extract_video
    if name in ("ExtractParams", "Extraction", "Extractor", "params_from_manifest"):
        from microaction.extract import pipeline

        return getattr(pipeline, name)
    if name == "run_extraction":
        from microaction.extract.runner import run_extraction

        return run_extraction
    raise AttributeError(f"module 'microaction.extract' has no attribute {name!r}")
