"""Keep the native libraries' routine log lines off the terminal.

MediaPipe's graph (C++, absl logging) and TensorFlow Lite write INFO and WARNING lines straight to
file descriptor 2 on every run ("Created TensorFlow Lite XNNPACK delegate for CPU", "Feedback
manager requires a model with a single signature ...", "Using NORM_RECT without IMAGE_DIMENSIONS
..."), where neither ``GLOG_minloglevel`` nor Python's ``logging`` reaches them. While a
``quiet_native_logs()`` block runs, fd 2 is a pipe read by a thread that forwards every line to the
real stderr except those routine ones; errors (absl ``E``/``F`` lines) and everything Python writes
pass unchanged. ``MAR_VERBOSE=1`` in the environment (``mar extract --verbose``, ``mar predict
--verbose``; inherited by worker processes) turns the filter off.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["VERBOSE_ENV", "is_routine", "quiet_native_logs", "set_verbose"]

VERBOSE_ENV = "MAR_VERBOSE"

# absl/glog lines of severity I(nfo) or W(arning): "W0000 00:00:1796022455.906191   16264 file.cc:114] ..."
_ABSL = re.compile(rb"^[IW]\d{4} [\d:.]+\s+\d+ [^\]]*\] ")
_ROUTINE_PREFIXES = (
    b"INFO: Created TensorFlow Lite",  # TFLite's own logger
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
)


def set_verbose(on: bool) -> None:
    """Show (True) or hide (False, the default) the native libraries' routine log lines, in this
    process and in the worker processes it starts."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def is_routine(line: bytes) -> bool:
    """A native INFO / WARNING log line (what the filter drops)."""
    s = line.lstrip(b"\r")
    return bool(_ABSL.match(s)) or s.startswith(_ROUTINE_PREFIXES)


def _maybe_routine_prefix(part: bytes) -> bool:
    """An unfinished line that may still become a routine one (held back until its newline)."""
    s = part.lstrip(b"\r")
    if not s:
        return False
    if s[:1] in (b"I", b"W") and (len(s) < 2 or s[1:2].isdigit()):
        return True
    return any(p.startswith(s) or s.startswith(p) for p in _ROUTINE_PREFIXES)


class _Filter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved: int | None = None
        self.thread: threading.Thread | None = None

    def _pump(self, read_fd: int, out_fd: int) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(read_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            out = []
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                parts = line.split(b"\r")  # a progress bar's redraw may share the line with a log line
                kept = [p for p in parts if not is_routine(p)]
                if len(kept) == len(parts) or any(kept):
                    out.append(b"\r".join(kept) + b"\n")
            if buf and not _maybe_routine_prefix(buf):
                out.append(buf)  # progress bars redraw with "\r" and no newline: pass them on now
                buf = b""
            if out:
                _write_all(out_fd, b"".join(out))
        if buf and not is_routine(buf):
            _write_all(out_fd, buf)
        os.close(read_fd)

    def enter(self) -> None:
        with self.lock:
            self.depth += 1
            if self.depth > 1 or os.environ.get(VERBOSE_ENV):
                return
            try:
                import sys

                sys.stderr.flush()
                saved = os.dup(2)
                r, w = os.pipe()
            except OSError:
                return  # no fd 2 to filter (a daemon): nothing to do
            os.dup2(w, 2)
            os.close(w)
            self.saved = saved
            self.thread = threading.Thread(target=self._pump, args=(r, saved), name="native-logs", daemon=True)
            self.thread.start()

    def exit(self) -> None:
        with self.lock:
            self.depth = max(0, self.depth - 1)
            if self.depth == 0:
                self._restore()

    def _restore(self) -> None:
        if self.saved is None:
            return
        import sys

        with suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(self.saved, 2)  # the pipe's last writer is gone: the pump drains it and stops
        if self.thread is not None:
            self.thread.join(timeout=5)
        os.close(self.saved)
        self.saved, self.thread = None, None

    def shutdown(self) -> None:
        with self.lock:
            self.depth = 0
            self._restore()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except OSError:
            return
        data = data[n:]


_FILTER = _Filter()
atexit.register(_FILTER.shutdown)  # a session left open by an error: stderr is whole again at exit


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Drop the native libraries' routine log lines from fd 2 inside the block (nestable,
    thread-safe; off when ``MAR_VERBOSE`` is set)."""
    _FILTER.enter()
    try:
        yield
    finally:
        _FILTER.exit()
