"""Access to the compiled module lfdn_edge._C, with a clear message when it was not built."""

from __future__ import annotations


def load_native():
    try:
        from . import _C
    except ImportError as exc:
        raise ImportError("lfdn_edge._C (the native core) is not built: install the package with "
                          "`pip install -e .` (needs a C++17 compiler and CMake)") from exc
    return _C


def native_available() -> bool:
    try:
        load_native()
    except ImportError:
        return False
    return True
