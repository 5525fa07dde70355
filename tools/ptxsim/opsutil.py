"""What every instruction module shares: the handler table it registers into, and the thread-index helpers
(an instruction runs on `idx`, all threads of the chunk as a slice or an index array)."""

from __future__ import annotations

from typing import Callable, Dict

import numpy as np


def registry():
    """(table, decorator): @handler("add", "sub") puts a factory into the module's table under each name."""
    table: Dict[str, Callable] = {}

    def handler(*names):
        def deco(f):
            for n in names:
                table[n] = f
            return f
        return deco
    return table, handler


def threads(st, idx) -> np.ndarray:
    """The executing threads as an index array."""
    return np.arange(st.T)[idx] if isinstance(idx, slice) else idx


def count(st, idx) -> int:
    return st.T if isinstance(idx, slice) else len(idx)


def full(v, n: int, dtype=None) -> np.ndarray:
    """A value read for n threads (an array, or a scalar from an immediate) as an array of length n."""
    a = np.asarray(v)
    if a.ndim == 0:
        return np.full(n, a, dtype=dtype or a.dtype)
    return a if dtype is None else a.astype(dtype, copy=False)
