"""Hostile pose pickles, built without numpy's help, and a crash-counting runner for them.

Shared by ``tests/test_pickle_safety.py`` (a few thousand cases) and
``benchmarks/bench_pickle_fuzz.py`` (tens of thousands). A case is a pickle whose bytes name
numpy's globals as real files do, but whose dtype states, shapes, byte counts and flags are drawn
at random -- written by a pickler that spells each global itself, so numpy never sees them while
the case is made. ``run_isolated`` loads cases in a worker process that reports each case before
loading it: a worker killed by a signal is a crash, counted against the case it was on, and a new
worker goes on from the next case.

    python tests/pickle_cases.py worker SEED START STOP fuzz|crafted safe|plain   # one worker
"""

from __future__ import annotations

import io
import os
import pickle
import random
import resource
import selectors
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PLAIN_CODES = ("b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8")
# descriptors a crafted file may name: plain ones, and the ones numpy trusts a state for
OTHER_CODES = ("V8", "V4096", "V1048576", "O8", "U3", "S4", "M8", "m8", "c8", "c16", "f16", "V0", "b2", "x", "")
PACKAGES = ("numpy.core", "numpy._core")
# numpy's "item is a pointer" flags (NPY_ITEM_REFCOUNT | NPY_ITEM_IS_POINTER ...) and others
FLAGS = (0, 0, 1, 4, 8, 16, 63, 255, -1, 1 << 40)


def global_(module: str, name: str) -> type:
    """A stand-in the pickler below writes as the global ``module.name``."""
    return type(name, (), {"pickle_as": (module, name)})


class Reduce:
    """An object that pickles as ``func(*args)`` followed by ``BUILD state`` (when not None)."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]  # the Python pickler: overridable
    def save_global(self, obj: Any, name: str | None = None) -> None:
        spelled = getattr(obj, "pickle_as", None)
        if spelled is None:
            super().save_global(obj, name)
            return
        module, name = spelled
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def dumps(obj: Any, protocol: int) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol).dump(obj)
    return buf.getvalue()


def plain_state(order: str) -> tuple[Any, ...]:
    return (3, order, None, None, None, -1, -1, 0)


def dtype(code: str, state: Any, *, align: Any = False, copy: Any = True) -> Reduce:
    return Reduce(global_("numpy", "dtype"), (code, align, copy), state)


def scalar(dt: Reduce, raw: bytes, pkg: str = "numpy.core") -> Reduce:
    return Reduce(global_(f"{pkg}.multiarray", "scalar"), (dt, raw))


def array(dt: Reduce, shape: tuple[int, ...], raw: bytes, *, fortran: bool = False, pkg: str = "numpy.core") -> Reduce:
    prelude = (global_("numpy", "ndarray"), (0,), b"b")
    return Reduce(global_(f"{pkg}.multiarray", "_reconstruct"), prelude, (1, shape, dt, fortran, raw))


def frombuffer(dt: Reduce, shape: tuple[int, ...], raw: bytes, order: str = "C", pkg: str = "numpy.core") -> Reduce:
    return Reduce(global_(f"{pkg}.numeric", "_frombuffer"), (bytearray(raw), dt, shape, order))


def annotation(keypoint: Any, score: Any = 1.0) -> dict[str, Any]:
    """A PySKL annotation list around one value."""
    ann = {"frame_dir": "a", "label": 0, "total_frames": 4, "keypoint": keypoint, "keypoint_score": score}
    return {"split": {"train": ["a"]}, "annotations": [ann]}


def crafted() -> dict[str, bytes]:
    """The reported cases: a void scalar whose dtype state sets the item-is-pointer flags (1 MB: a
    segfault; 4 kB: process memory read back), and the same states in an array and a buffer."""
    out = {}
    for size in (1 << 20, 4096):
        dt = dtype(f"V{size}", (3, "|", None, None, None, size, 1, 4))
        out[f"void{size}_scalar"] = dumps(annotation(scalar(dt, b"A" * 8)), 2)
        out[f"void{size}_array"] = dumps(annotation(array(dt, (1,), b"A" * 8)), 2)
    # a plain descriptor with a lying state (item size 1 MB), as scalar and as protocol-5 buffer
    liar = dtype("f4", (3, "<", None, None, None, 1 << 20, 4, 4))
    out["f4_lying_state_scalar"] = dumps(annotation(scalar(liar, b"A" * 4)), 2)
    out["f4_lying_state_buffer"] = dumps(annotation(frombuffer(liar, (2,), b"A" * 8)), 5)
    out["object_flags_on_i8"] = dumps(
        annotation(scalar(dtype("i8", (3, "<", None, None, None, -1, -1, 63)), b"A" * 8)), 2
    )
    return out


def valid(rng: random.Random) -> bytes:
    """A real pose pickle as numpy writes it (protocols 2-5, several dtypes, a scalar or two)."""
    code = rng.choice(PLAIN_CODES)
    order = rng.choice("<>") if code[1] != "1" else "|"
    kp = (np.arange(rng.randint(0, 3) * 34) % 7).astype(order + code)
    kp = kp.reshape(-1, 17, 2) if kp.size else kp
    if rng.random() < 0.3:
        kp = np.asfortranarray(kp)
    score: Any = np.float32(rng.random()) if rng.random() < 0.5 else np.ones(3, np.float16)
    return pickle.dumps(annotation(kp, score), protocol=rng.randint(2, 5))


def _random_state(rng: random.Random, code: str) -> Any:
    if rng.random() < 0.3:
        return plain_state(rng.choice("<>|="))
    if rng.random() < 0.1:
        return rng.choice([None, 3, (), (3,), "x", (3, "<", None, None, None, -1, -1, 0, None)])
    return (
        rng.choice([3, 3, 3, 1, 2, 4, -1, 1 << 40]),
        rng.choice(["<", ">", "|", "=", "x", ""]),
        rng.choice([None, None, (dtype("f4", None), (2,)), (dtype("V8", None), (1 << 30,))]),
        rng.choice([None, None, ("a",), ("a", "b")]),
        rng.choice([None, None, {}, {"a": (dtype("f4", None), 0)}]),
        rng.choice([-1, -1, 0, 1, 4, 8, 4096, 1 << 20, 1 << 31, -5]),
        rng.choice([-1, -1, 0, 1, 2, 3, 4, 8, 16, 1 << 20]),
        rng.choice(FLAGS),
    )


def fuzzed_dtype(rng: random.Random) -> bytes:
    """A dtype with a drawn descriptor and state, used as a scalar, an array or a buffer."""
    code = rng.choice(PLAIN_CODES + OTHER_CODES)
    dt = dtype(code, _random_state(rng, code), align=rng.choice([False, False, True, 1]), copy=rng.choice([True, 0]))
    nbytes = rng.choice([0, 1, 2, 4, 8, 16, 4096, rng.randint(0, 64)])
    raw, pkg = bytes(rng.randrange(256) for _ in range(nbytes)), rng.choice(PACKAGES)
    shape = rng.choice([(), (0,), (1,), (2,), (nbytes,), (nbytes // 4, 2), (1 << 31,), (-1,), (2, 1 << 62)])
    use = rng.choice(["scalar", "array", "buffer"])
    if use == "scalar":
        value = scalar(dt, raw, pkg)
    elif use == "array":
        value = array(dt, shape, raw, fortran=rng.random() < 0.2, pkg=pkg)
    else:
        value = frombuffer(dt, shape, raw, rng.choice("CFA"), pkg)
    proto = 5 if use == "buffer" else rng.randint(2, 5)
    return dumps(annotation(value), proto)


def mutate(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not raw:
            break
        op, pos = rng.random(), rng.randrange(len(raw))
        if op < 0.6:
            raw[pos] = rng.randrange(256)
        elif op < 0.75:
            raw.insert(pos, rng.randrange(256))
        elif op < 0.9:
            del raw[pos]
        else:
            del raw[rng.randrange(1, len(raw) + 1) :]
    return bytes(raw)


def case(seed: int, i: int) -> bytes:
    """Case ``i`` of the run ``seed`` (the same bytes on every machine)."""
    rng = random.Random(f"{seed}:{i}")
    kind = rng.random()
    if kind < 0.4:
        return fuzzed_dtype(rng)
    if kind < 0.9:
        return mutate(valid(rng), rng)
    base = list(crafted().values()) if kind < 0.95 else [fuzzed_dtype(rng)]
    return mutate(rng.choice(base), rng)


def check(data: bytes, source: str, loader: str = "safe") -> str:
    """Load one case the way `mar` does (``loader="plain"``: with ``pickle.loads``, the control);
    touch every array it gives. -> 'loaded' / 'refused'."""
    from microaction.data.errors import AnnotationError
    from microaction.data.pickles import safe_loads

    try:
        obj = safe_loads(data, source=source) if loader == "safe" else pickle.loads(data)
    except AnnotationError as e:
        if source not in str(e):
            raise AssertionError(f"the error does not name the file: {e}") from None
        return "refused"
    if loader != "safe":
        _touch(obj)
        return "loaded"
    todo = [obj]
    while todo:  # every byte of every array read back: an out-of-bounds view would crash here
        v = todo.pop()
        if isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, list | tuple):
            todo.extend(v)
        elif isinstance(v, np.ndarray | np.generic):
            arr = np.asarray(v)
            if arr.dtype.kind not in "biuf" or len(arr.tobytes()) != arr.size * arr.dtype.itemsize:
                raise AssertionError(f"an array of dtype {arr.dtype} came back")
    return "loaded"


def _touch(obj: Any) -> None:
    """Read back every numpy value ``pickle.loads`` gave (the control's loads are unchecked)."""
    todo = [obj]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, list | tuple):
            todo.extend(v)
        elif isinstance(v, np.ndarray | np.generic):
            bytes(np.asarray(v).tobytes())


def _worker(seed: int, start: int, stop: int, which: str, loader: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a huge allocation fails, not the machine
    out = sys.stdout
    fixed = list(crafted().values())
    for i in range(start, stop):
        data = case(seed, i) if which == "fuzz" else fixed[i % len(fixed)]
        out.write(f"start {i}\n")
        out.flush()
        try:
            outcome = check(data, f"case-{i}.pkl", loader)
        except Exception as e:  # a bug of the reader: reported, the run goes on
            outcome = f"error {type(e).__name__}: {str(e)[:120]!r}"
        out.write(f"done {i} {outcome}\n")
    out.flush()


@dataclass
class FuzzRun:
    """What ``run_isolated`` saw: outcome counts, the cases that crashed / erred, time and CPU."""

    counts: Counter[str] = field(default_factory=Counter)
    crashed: list[tuple[int, int]] = field(default_factory=list)  # (case, signal or exit status)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    workers: int = 0


def run_isolated(
    seed: int, count: int, *, which: str = "fuzz", loader: str = "safe", case_timeout_s: float = 20.0
) -> FuzzRun:
    """Load cases ``0..count-1`` of ``seed`` (``which="crafted"``: the reported cases in turn) in
    worker processes; a dead worker is a counted crash and the next worker goes on after it."""
    import microaction

    src = str(Path(microaction.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    env["OPENBLAS_NUM_THREADS"] = "1"
    run, start, t0 = FuzzRun(), 0, time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    while start < count:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "worker",
            str(seed),
            str(start),
            str(count),
            which,
            loader,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        run.workers += 1
        current, hung = start, False
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            if not sel.select(timeout=case_timeout_s):
                hung = True
                proc.kill()
                break
            line = proc.stdout.readline()
            if not line:
                break
            word, index, *rest = line.split(" ", 2)
            current = int(index)
            if word == "done":
                outcome = rest[0].strip()
                run.counts[outcome.split(" ")[0]] += 1
                if outcome.startswith("error"):
                    run.errors.append(f"case {current}: {outcome}")
                current += 1
        status = proc.wait()
        sel.close()
        proc.stdout.close()
        if current >= count and status == 0:
            break
        run.counts["hang" if hung else "crash"] += 1
        run.crashed.append((current, status))
        start = current + 1
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.wall_s = time.perf_counter() - t0
    run.cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return run


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "worker":
        _worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        raise SystemExit(__doc__)
