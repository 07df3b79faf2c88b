"""A restricted unpickler for pose annotation files from other toolkits (MMAction2, PySKL).

``pickle.load`` runs whatever callable a file names, so an annotation file downloaded from a
challenge page or a forum could run code on the reader's machine. These files only ever hold
plain containers (dict, list, tuple, str, numbers) and numpy arrays, so ``load_pose_pickle``
admits exactly the globals needed to rebuild those -- numpy's array reconstructors,
``numpy.ndarray`` and ``numpy.dtype`` (under their numpy 1 and numpy 2 module names), and
``collections.OrderedDict`` / ``set`` / ``frozenset`` / ``complex`` / ``_codecs.encode`` (how
protocol-2 pickles spell bytes) -- and refuses anything else with an error naming the file and
the forbidden global. Object arrays go through the same filter for each element.

The ``frame_dir`` of an annotation is only an identifier, like every video name in this package
(see ``microaction.data.annotations``): it is never turned into model input.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

from microaction.data.errors import AnnotationError

__all__ = ["ForbiddenPickle", "load_pose_pickle", "safe_loads"]

# (module, name) pairs admitted; a numpy 1 name and its numpy 2 spelling both resolve to the
# object the installed numpy has.
_NUMPY_NAMES = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
_NUMPY_PACKAGES = ("numpy.core", "numpy._core")
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("_codecs", "encode"),
}
_MAX_BYTES = 4 << 30  # refuse absurd files before reading them whole


class ForbiddenPickle(AnnotationError):
    """A pickle that names a global outside the admitted set."""


class _Restricted(pickle.Unpickler):
    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self._source, self._size = source, len(data)

    def find_class(self, module: str, name: str) -> Any:
        # protocol 0-2 files name Python 2 modules (__builtin__.set); map them as pickle does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        for pkg in _NUMPY_PACKAGES:
            sub = module[len(pkg) + 1 :]
            if module.startswith(pkg + ".") and (sub, name) in _NUMPY_NAMES:
                if name == "_reconstruct":
                    return self._reconstruct
                return _numpy_attr(sub, name)
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype
        if (module, name) in _ALLOWED:
            return getattr(importlib.import_module(module), name)
        raise ForbiddenPickle(
            f"{self._source}: refused to load: the pickle names the global {module}.{name}; "
            "pose pickles may hold only numpy arrays, dtypes and plain containers"
        )

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        # numpy pickles an array as an empty one plus its bytes; a corrupt file can ask for a huge
        # shape here, which would be allocated before anything else fails
        import numpy as np

        dt = _plain_dtype(dtype)
        n = int(np.prod(np.asarray(shape, dtype=np.int64))) if np.ndim(shape) else int(shape)
        if n < 0 or n * max(1, dt.itemsize) > self._size:
            raise ValueError(f"an array of {n} elements cannot come from a {self._size}-byte file")
        return _numpy_attr("multiarray", "_reconstruct")(subtype, shape, dtype)

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickle(f"{self._source}: refused to load: the pickle uses persistent ids")


# Known limit: numpy trusts the state a pickle BUILDs into a dtype (sizes, alignment). A corrupt
# state there can make numpy allocate wildly or crash; only trusted pose pickles should be loaded
# until that state is checked too.
def _plain_dtype(*args: Any) -> Any:
    """``numpy.dtype`` without object dtypes: pose data never needs them, and an object array of a
    corrupt shape is filled (memory touched) as it is made."""
    import numpy as np

    dt = np.dtype(*args)
    if dt.hasobject:
        raise ValueError("object-dtype numpy arrays are not admitted in pose pickles")
    return dt


def _numpy_attr(submodule: str, name: str) -> Any:
    for pkg in _NUMPY_PACKAGES[::-1]:
        try:
            return getattr(importlib.import_module(f"{pkg}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"numpy has no {submodule}.{name}")


def safe_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle bytes admitting only numpy arrays / dtypes and plain containers."""
    try:
        return _Restricted(data, source).load()
    except ForbiddenPickle:
        raise
    except RecursionError:
        raise AnnotationError(f"{source}: not a readable pickle (nested too deeply)") from None
    except MemoryError:
        raise AnnotationError(f"{source}: not a readable pickle (too large to rebuild)") from None
    except Exception as e:
        # a corrupt or truncated stream raises whatever the opcode at hand raises
        # (UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, ...)
        raise AnnotationError(f"{source}: not a readable pickle ({type(e).__name__}: {e})") from None


def load_pose_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pose pickle (a dict with ``annotations`` / ``split``, or a list of dicts) safely.

    Raises :class:`ForbiddenPickle` (an ``AnnotationError``) naming the file and the global when
    the file asks for anything but numpy arrays and plain containers.
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
