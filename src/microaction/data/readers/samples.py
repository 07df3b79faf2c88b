"""``Sample`` (one clip of an annotation file) and the text helpers every annotation reader
shares; a module of its own so that the readers of ``annotations``, ``poses`` and
``mpiigi`` use them without importing each other."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from microaction.data.errors import AnnotationError
from microaction.data.readers.person_boxes import BoxRow
from microaction.data.store import video_key

__all__ = ["UNKNOWN", "Sample", "csv_rows", "int_field", "read_text", "split_from_list_name"]

UNKNOWN = -1  # label of a clip whose label is hidden (benchmark test splits) or not given


@dataclass(frozen=True)
class Sample:
    video: str  # as named in the annotation: a file name or a path relative to the video root
    label: int = UNKNOWN  # class id, UNKNOWN when hidden
    body: int = UNKNOWN  # body group id when the file gives one (else derive from the taxonomy)
    split: str | None = None
    start: int | None = None  # frame window [start, end) inside a long video
    end: int | None = None
    labels: tuple[int, ...] = ()  # multi-label datasets (MPII-GI): all positive class ids
    person: str | None = None  # who in the video (None: the main person); key ``video#person``
    boxes: tuple[BoxRow, ...] = ()  # the person's box: (video frame, x1, y1, x2, y2) native pixels

    @property
    def key(self) -> str:
        """Feature-store key of this clip."""
        return video_key(self.video, self.start, self.end, self.person)


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise AnnotationError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {column})") from None


def csv_rows(text: str, source: object, empty: str = "empty file") -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header row of CSV ``text`` as written, and (line number, cells stripped) of every
    non-blank row after it. No header, or a row the csv module cannot parse, is an
    ``AnnotationError`` naming ``source`` (``empty`` says what was expected) and the line."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise AnnotationError(f"{source}: {empty}") from None
    except csv.Error as e:
        raise AnnotationError(f"{source}:1: {e}") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for row in reader:
                if row and any(c.strip() for c in row):
                    yield reader.line_num, [c.strip() for c in row]
        except csv.Error as e:
            raise AnnotationError(f"{source}:{reader.line_num}: {e}") from None

    return header, rows()


def int_field(value: str, *, what: str, where: str, lo: int | None = None) -> int:
    try:
        v = int(value.strip())
    except ValueError:
        raise AnnotationError(f"{where}: {what} {value!r} is not an integer") from None
    if lo is not None and v < lo:
        raise AnnotationError(f"{where}: {what} {v} must be >= {lo}")
    if abs(v) > 2**31:
        raise AnnotationError(f"{where}: {what} {v} is out of range")
    return v


_SPLIT_IN_NAME = re.compile(r"^(train|val|test)(?:_|$)", re.IGNORECASE)


def split_from_list_name(path: str | os.PathLike[str]) -> str | None:
    """``train`` / ``val`` / ``test`` from an official list name (``val_list_videos.txt``)."""
    m = _SPLIT_IN_NAME.match(Path(path).name)
    return m.group(1).lower() if m else None
