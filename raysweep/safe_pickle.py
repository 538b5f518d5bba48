"""Reading pickles without running code: a restricted unpickler for the data formats raysweep reads.

Unpickling calls whatever a file names (`os.system`, `builtins.eval`, ...), so a crafted `anno.pkl` would run code
on the machine that reads it. `load_pickle` admits only the numpy and built-in types that DEFR's HICO `anno.pkl`
(Python 3 or Python 2 pickles, numpy arrays of numbers, strings or objects, scipy.io structured records) is made of;
anything else is refused with `PickleRefused`. `allow_pickle=True` is the full `pickle.load`, for files you trust
(`--allow-pickle` on the command line, `data.allow_pickle: true` in a space file).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

# (module, name) the restricted unpickler may look up; module names as Python 3 writes them.
SAFE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "slice"),
    ("builtins", "range"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"), ("codecs", "encode"),  # how Python 2 str / bytes reach Python 3
})
ALLOW_HINT = "pass --allow-pickle for a file you trust"


class PickleRefused(pickle.UnpicklingError):
    """The file names a global outside SAFE_GLOBALS: loading it could run code."""


def _canonical(module: str) -> str:
    """Python 2 and numpy 1.x spellings of the same modules."""
    if module == "__builtin__":
        return "builtins"
    if module == "numpy.core" or module.startswith("numpy.core."):
        return "numpy._core" + module[len("numpy.core"):]
    return module


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` admits SAFE_GLOBALS only."""

    def find_class(self, module: str, name: str) -> Any:
        canonical = _canonical(module)
        if (canonical, name) not in SAFE_GLOBALS:
            raise PickleRefused(f"it names {module}.{name}, which is not a numpy or built-in data type, and loading "
                                f"it could run code")
        try:
            return super().find_class(canonical, name)
        except (ImportError, AttributeError):  # numpy < 2 has no numpy._core
            return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefused("it holds persistent ids, which only a program's own loader can resolve")


def load_pickle(handle: BinaryIO, allow_pickle: bool = False, encoding: str = "ASCII") -> Any:
    """One object from `handle`: restricted unless `allow_pickle`."""
    if allow_pickle:
        return pickle.load(handle, encoding=encoding)
    return RestrictedUnpickler(handle, encoding=encoding).load()


def load_pickle_file(path: str | Path, allow_pickle: bool = False) -> Any:
    """`load_pickle` on a file, falling back to latin1 for Python 2 pickles of numpy arrays (as DEFR's loader does)."""
    data = Path(path).read_bytes()
    try:
        return load_pickle(io.BytesIO(data), allow_pickle)
    except UnicodeDecodeError:
        return load_pickle(io.BytesIO(data), allow_pickle, encoding="latin1")
