"""A restricted unpickler for pose annotation files from other toolkits (MMAction2, PySKL).

``pickle.load`` runs whatever callable a file names, so an annotation file downloaded from a
challenge page or a forum could run code on the reader's machine. These files only ever hold
plain containers (dict, list, tuple, str, numbers) and numpy arrays of numbers, so
``load_pose_pickle`` admits exactly the globals that spell those -- numpy's array and scalar
reconstructors, ``numpy.ndarray`` and ``numpy.dtype`` (under their numpy 1 and numpy 2 module
names), ``collections.OrderedDict`` / ``set`` / ``frozenset`` / ``complex`` / ``slice`` and
``_codecs.encode`` with latin-1 and ``bytes()`` (how protocol-2 pickles spell bytes) -- and refuses anything else
with an error naming the file and the forbidden global.

None of those numpy names reaches numpy. A dtype's pickled state (sizes, alignment, flags) is
trusted by numpy: a crafted one (a void dtype flagged as holding pointers) makes numpy read
outside its buffer or crash. So the numpy globals resolve to stand-ins here: ``numpy.dtype``
admits only the plain numeric descriptors (bool, ints, floats) with the exact state numpy writes
for them; an array is rebuilt from its raw bytes with ``numpy.frombuffer`` once its shape times
its item size equals their length; a scalar is rebuilt only from exactly one item's bytes.
Everything else (object, string, void, datetime, structured dtypes, any other state) is refused.
Big-endian arrays come back in native byte order.

The ``frame_dir`` of an annotation is only an identifier, like every video name in this package
(see ``microaction.data.annotations``): it is never turned into model input.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
import pickletools
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from microaction.data.errors import AnnotationError

__all__ = ["ForbiddenPickle", "load_pose_pickle", "safe_loads"]

_NUMPY_PACKAGES = ("numpy.core", "numpy._core")
# the plain numeric descriptors numpy pickles (dtype.__reduce__ gives the code without byte order)
_PLAIN_CODES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"})
_BUILTINS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
}
_MAX_DIMS = 32  # numpy's own limit
_MAX_BYTES = 4 << 30  # refuse absurd files before reading them whole


class ForbiddenPickle(AnnotationError):
    """A pickle that names a global outside the admitted set."""


class _Refused(ValueError):
    """Numpy content this reader does not rebuild (the message says what)."""


class _PickledDtype:
    """What ``numpy.dtype(code, align, copy)`` plus its state build here: a plain numeric descriptor."""

    __slots__ = ("code", "order")

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or code not in _PLAIN_CODES:
            raise _Refused(f"the dtype {_short(code)} is not a plain numeric one (bool, int, float)")
        if not (isinstance(align, bool) and isinstance(copy, bool)):
            raise _Refused("numpy.dtype called with arguments numpy never pickles")
        self.code, self.order = code, "|" if code.endswith("1") else "="

    def __setstate__(self, state: Any) -> None:
        # exactly what numpy writes for a plain numeric dtype: (3, order, None x3, -1, -1, 0)
        one_byte = self.code.endswith("1")
        if (
            not isinstance(state, tuple)
            or len(state) != 8
            or type(state[0]) is not int
            or state[0] != 3
            or state[1] not in (("|",) if one_byte else ("<", ">"))
            or state[2:5] != (None, None, None)
            or any(type(v) is not int for v in state[5:])
            or state[5:] != (-1, -1, 0)
        ):
            raise _Refused(f"the pickled state of dtype {self.code!r} is not a plain numeric dtype's")
        self.order = state[1]

    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.order + self.code)


class _Frozen:
    """No attributes can be set: a pickle's BUILD on an admitted global must not change it."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise _Refused("a pickle that sets attributes on a numpy global")


class _NdarrayType(_Frozen):
    """Stands for ``numpy.ndarray`` (an argument of the array prelude); not callable."""

    __slots__ = ()


class _Global(_Frozen):
    """An admitted callable, as handed to the unpickler."""

    __slots__ = ("_fn",)
    _fn: Any

    def __init__(self, fn: Any) -> None:
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


_NDARRAY = _NdarrayType()


class _PendingArray:
    """``_reconstruct(ndarray, (0,), b'b')``: an array whose state (shape, dtype, bytes) comes next."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray[Any, Any] | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("an array state that numpy does not write")
        if len(state) == 5:
            if type(state[0]) is not int or state[0] != 1:
                raise _Refused("an array state of an unknown version")
            state = state[1:]
        shape, dtype, fortran, raw = state
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise _Refused("an array state with a bad order flag")
        if not isinstance(raw, bytes | bytearray):
            raise _Refused("an array whose data is not bytes (object arrays are not admitted)")
        self.array = _from_bytes(raw, dtype, shape, "F" if fortran else "C")


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > _MAX_DIMS or any(type(n) is not int or n < 0 for n in shape):
        raise _Refused("an array shape that is not a tuple of non-negative ints")
    return shape


def _from_bytes(raw: bytes | bytearray, dtype: Any, shape: Any, order: Any) -> np.ndarray[Any, Any]:
    """A writable native-order array from exactly ``prod(shape) * itemsize`` bytes."""
    if not isinstance(dtype, _PickledDtype):
        raise _Refused("an array whose dtype is not a pickled numpy.dtype")
    dt, shape = dtype.dtype(), _shape(shape)
    if order not in ("C", "F"):
        raise _Refused("an array with an unknown memory order")
    if math.prod(shape) * dt.itemsize != len(raw):
        raise _Refused(f"an array of shape {shape} ({dt}) cannot come from {len(raw)} bytes")
    arr = np.frombuffer(raw, dtype=dt).reshape(shape, order=order)
    return arr.astype(dt.newbyteorder("="), order="K", copy=True)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _PendingArray:
    # numpy's array prelude is always _reconstruct(ndarray, (0,), b'b'); anything else is crafted
    if subtype is not _NDARRAY or type(shape) is not tuple or shape != (0,) or type(dtype) not in (bytes, str):
        raise _Refused("an array prelude numpy does not write (numpy pickles _reconstruct(ndarray, (0,), b'b'))")
    if type(shape[0]) is not int or dtype not in (b"b", "b"):
        raise _Refused("an array prelude numpy does not write (numpy pickles _reconstruct(ndarray, (0,), b'b'))")
    return _PendingArray()


def _scalar(dtype: Any, raw: Any = None) -> Any:
    if not isinstance(dtype, _PickledDtype):
        raise _Refused("a numpy scalar whose dtype is not a plain numeric one")
    dt = dtype.dtype()
    if not isinstance(raw, bytes) or len(raw) != dt.itemsize:
        raise _Refused(f"a numpy {dt} scalar needs exactly {dt.itemsize} bytes")
    return np.frombuffer(raw, dtype=dt)[0].astype(dt.newbyteorder("="))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray[Any, Any]:
    # protocol 5: the array's bytes come in-band as bytes / bytearray
    if not isinstance(buf, bytes | bytearray):
        raise _Refused("an array buffer that is not bytes")
    return _from_bytes(buf, dtype, shape, order)


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    # how protocol 0-2 pickles spell bytes: _codecs.encode(str, 'latin1'); no other codec
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode is admitted only as latin-1 of a str (how pickles spell bytes)")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    # protocols 0-2 write b"" as bytes(); bytes(n) would allocate n bytes
    if args:
        raise _Refused("bytes() is admitted only without arguments (how pickles spell b'')")
    return b""


_NUMPY_STANDINS = {
    ("multiarray", "_reconstruct"): _Global(_reconstruct),
    ("multiarray", "scalar"): _Global(_scalar),
    ("numeric", "_frombuffer"): _Global(_frombuffer),
}
_DTYPE, _LATIN1, _BYTES = _Global(_PickledDtype), _Global(_latin1), _Global(_empty_bytes)


def _short(value: Any) -> str:
    """A few characters naming a value from the file (never its whole repr)."""
    if isinstance(value, str | bytes):
        return repr(value[:24]) + ("..." if len(value) > 24 else "")
    if type(value) is int and abs(value) < 10**18:
        return repr(value)
    return f"of type {type(value).__name__}"


class _Restricted(pickle.Unpickler):
    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        # protocol 0-2 files name Python 2 modules (__builtin__.set); map them as pickle does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        for pkg in _NUMPY_PACKAGES:
            if module.startswith(pkg + ".") and (module[len(pkg) + 1 :], name) in _NUMPY_STANDINS:
                return _NUMPY_STANDINS[(module[len(pkg) + 1 :], name)]
        if (module, name) == ("numpy", "dtype"):
            return _DTYPE
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        if (module, name) == ("_codecs", "encode"):
            return _LATIN1
        if (module, name) == ("builtins", "bytes"):
            return _BYTES
        if (module, name) in _BUILTINS:
            return _BUILTINS[(module, name)]
        raise ForbiddenPickle(
            f"{self._source}: refused to load: the pickle names the global {module}.{name}; "
            "pose pickles may hold only numpy arrays of numbers and plain containers"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickle(f"{self._source}: refused to load: the pickle uses persistent ids")


_STANDINS = (_PendingArray, _PickledDtype, _Frozen)
_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None), np.generic, np.ndarray)


def _finish(obj: Any, seen: dict[int, tuple[Any, Any]]) -> Any:
    """``obj`` with every stand-in replaced by what it stands for (lists and dicts in place).

    ``seen`` maps ``id`` to (original, result): the original is kept so that its id is not reused.
    """
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise _Refused("an array without its state")
        return obj.array
    if isinstance(obj, _STANDINS):
        raise _Refused("a bare numpy dtype or global where data belongs")
    if isinstance(obj, _PLAIN):
        return obj
    if id(obj) in seen:
        done = seen[id(obj)][1]
        if done is _IN_PROGRESS:
            raise _Refused("a tuple that contains itself")
        return done
    if isinstance(obj, list):
        seen[id(obj)] = (obj, obj)
        obj[:] = [_finish(v, seen) for v in obj]
    elif isinstance(obj, dict):
        seen[id(obj)] = (obj, obj)
        items = [(_key(k), _finish(v, seen)) for k, v in obj.items()]
        obj.clear()
        obj.update(items)
    elif isinstance(obj, tuple):
        seen[id(obj)] = (obj, _IN_PROGRESS)
        done = tuple(_finish(v, seen) for v in obj)
        seen[id(obj)] = (obj, done)
        return done
    elif isinstance(obj, set | frozenset | slice):
        _key(obj)
    else:
        raise _Refused(f"an object of type {type(obj).__name__}")
    return obj


_IN_PROGRESS = object()


def _key(k: Any) -> Any:
    """A dict key or set member: hashable, so no list or dict; refused if a stand-in hides inside."""
    todo = [k]
    while todo:
        v = todo.pop()
        if isinstance(v, _STANDINS):
            raise _Refused("a numpy array or dtype as a key or set member")
        if isinstance(v, tuple | frozenset | set):
            todo.extend(v)
        elif isinstance(v, slice):
            todo.extend((v.start, v.stop, v.step))
    return k


_MEMO_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def _check_memo(data: bytes) -> None:
    """Refuse memo indices no pickler writes: C's unpickler grows (and zero-fills) its memo table
    to twice the largest index, so one ``LONG_BINPUT 2**32-1`` would take 64 GB. A pickler numbers
    its memo entries in order, so an index never exceeds the opcodes before it."""
    for n, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in _MEMO_OPS and isinstance(arg, int) and arg > n:
            raise _Refused(f"a memo index ({arg}) larger than the pickle could fill")


def safe_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle bytes admitting only numpy arrays / scalars of numbers and plain containers."""
    try:
        _check_memo(data)
        return _finish(_Restricted(data, source).load(), {})
    except ForbiddenPickle:
        raise
    except _Refused as e:
        raise AnnotationError(f"{source}: refused to load: {e}") from None
    except RecursionError:
        raise AnnotationError(f"{source}: not a readable pickle (nested too deeply)") from None
    except MemoryError:
        raise AnnotationError(f"{source}: not a readable pickle (too large to rebuild)") from None
    except Exception as e:
        # a corrupt or truncated stream raises whatever the opcode at hand raises
        # (UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, ...)
        raise AnnotationError(f"{source}: not a readable pickle ({type(e).__name__}: {_clip(e)})") from None


def _clip(e: Exception) -> str:
    text = str(e)
    return text if len(text) <= 200 else text[:197] + "..."


def load_pose_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pose pickle (a dict with ``annotations`` / ``split``, or a list of dicts) safely.

    Raises :class:`ForbiddenPickle` (an ``AnnotationError``) naming the file and the global when
    the file asks for anything but numpy arrays and plain containers, and ``AnnotationError``
    naming the file for numpy content other than plain numeric arrays and scalars.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise AnnotationError(f"{path}: {size} bytes; larger than a pose pickle should be")
        data = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror or e})") from None
    obj = safe_loads(data, source=str(path))
    if not isinstance(obj, dict | list | tuple):
        raise AnnotationError(f"{path}: a pose pickle holds a dict or a list, not {type(obj).__name__}")
    return obj
