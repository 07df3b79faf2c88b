"""The error of every annotation reader.

In a module of its own so that the readers (``data.annotations``) and the restricted unpickler
they use for pose pickles (``data.pickles``) share it without importing each other.
"""

from __future__ import annotations

__all__ = ["AnnotationError"]


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and line."""
