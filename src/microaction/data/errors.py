"""The errors of the data layer: annotation readers and feature stores.

In a module of its own so that the readers (``data.annotations``) and the restricted unpickler
they use for pose pickles (``data.pickles``) share one, and the feature store (``data.store``)
and its packed arrays (``data.packed``) the other, without importing each other.
"""

from __future__ import annotations

__all__ = ["AnnotationError", "StoreError", "StoreMismatch", "readable_text"]


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and line."""


class StoreError(RuntimeError):
    """A feature store that cannot be read or written as asked."""


class StoreMismatch(StoreError):
    """A store whose extraction parameters do not match what a run expects."""


def readable_text(text: str, limit: int = 400) -> str:
    """``text`` fit for a terminal: control and other unprintable characters escaped, and at most
    ``limit`` characters (head and tail kept). Error messages quote what a damaged file holds
    (zipfile quotes a whole corrupt header: 146 kB of binary once)."""
    out = "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode("ascii") for c in text)
    if len(out) <= limit:
        return out
    keep = limit // 2
    return f"{out[:keep]} [... {len(out) - 2 * keep} characters left out ...] {out[-keep:]}"
