"""The errors of the data layer: annotation readers and feature stores.

In a module of its own so that the readers (``data.annotations``) and the restricted unpickler
they use for pose pickles (``data.pickles``) share one, and the feature store (``data.store``)
and its packed arrays (``data.packed``) the other, without importing each other.
"""

from __future__ import annotations

__all__ = ["AnnotationError", "StoreError", "StoreMismatch"]


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and line."""


class StoreError(RuntimeError):
    """A feature store that cannot be read or written as asked."""


class StoreMismatch(StoreError):
    """A store whose extraction parameters do not match what a run expects."""
