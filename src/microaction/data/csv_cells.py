"""CSV files written for people: text cells that a spreadsheet would run as formulas are defused.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
spreadsheets skip before looking) is read by Excel, LibreOffice and Google Sheets as a formula;
class names, video names and person ids come from files anyone may write, so a class named
``=HYPERLINK(...)`` in a predict CSV would run when the file is opened. Such a text cell is
written with a leading ``'`` (what the spreadsheets themselves use to mean "text"); cells that
parse as numbers (``-0.25``, ``+3``) are left as they are. Used for every CSV the toolkit writes
for people (``mar predict --out X.csv``, ``timeline.csv``); submission files for evaluation
servers are written byte for byte as their format says.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

__all__ = ["neutralise", "writer"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is text a spreadsheet would take for a formula."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value  # a number such as -0.25
    except ValueError:
        return "'" + value


class _Writer:
    def __init__(self, f: Any, **kwargs: Any) -> None:
        self._w = csv.writer(f, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow([neutralise(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(f: Any, **kwargs: Any) -> _Writer:
    """``csv.writer(f, **kwargs)`` whose text cells are defused (``neutralise``)."""
    return _Writer(f, **kwargs)
