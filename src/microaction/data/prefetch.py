"""Items of an iterator produced in a background thread (batches beside training, decoded frames
beside a parser that releases the GIL)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["background"]

T = TypeVar("T")


def background(items: Iterable[T], maxsize: int = 8, *, join_timeout: float = 10.0) -> Iterator[T]:
    """The items of ``items`` produced in a thread, at most ``maxsize`` ahead; an exception there
    is raised here, and stopping early stops the thread."""
    q: queue.Queue[object] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    end = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as e:  # handed to the consumer
            put(e)

    thread = threading.Thread(target=produce, name="microaction-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=join_timeout)
