"""Memory of the interpreted device: global memory (allocations with guard gaps, per-byte initialisation
state), and the per-launch shared (with the racecheck state) and local memory.

Addresses: global allocations live at GLOBAL_BASE upwards, each 256-byte aligned with a 256-byte unmapped
gap after it (an access that leaves its allocation is a memcheck error even when it would land in the next
one on a GPU). Generic addresses of shared and local memory are the state-space offset plus SHARED_WINDOW /
LOCAL_WINDOW (what cvta gives); state-space addresses of shared and local memory are the offsets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

GLOBAL_BASE = 0x7F00_0000_0000
SHARED_WINDOW = 0x0001_0000_0000_0000
LOCAL_WINDOW = 0x0002_0000_0000_0000
WINDOW_SIZE = 1 << 32
_GAP = 256

UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclass
class Allocation:
    start: int
    size: int
    name: str


def gather(data: np.ndarray, offs: np.ndarray, esize: int, count: int) -> np.ndarray:
    """[n, count] elements of esize bytes at byte offsets offs (each a multiple of esize)."""
    view = data.view(UINT[esize])
    base = (offs // esize).astype(np.int64)
    if count == 1:
        return view[base][:, None]
    return view[base[:, None] + np.arange(count, dtype=np.int64)[None, :]]


def scatter(data: np.ndarray, offs: np.ndarray, esize: int, values: np.ndarray) -> None:
    view = data.view(UINT[esize])
    base = (offs // esize).astype(np.int64)
    count = values.shape[1]
    idx = base[:, None] + np.arange(count, dtype=np.int64)[None, :]
    view[idx.ravel()] = values.astype(UINT[esize], copy=False).ravel()


def byte_index(offs: np.ndarray, nbytes: int) -> np.ndarray:
    return (offs.astype(np.int64)[:, None] + np.arange(nbytes, dtype=np.int64)[None, :])


class GlobalMemory:
    """Device memory: allocations, contents and which bytes were ever written (initcheck)."""

    def __init__(self) -> None:
        self.data = np.zeros(1 << 16, np.uint8)
        self.init = np.zeros(1 << 16, bool)
        self.allocs: List[Allocation] = []
        self._starts = np.zeros(0, np.int64)
        self._ends = np.zeros(0, np.int64)
        self.top = 0  # offset of the next allocation

    def _grow(self, need: int) -> None:
        if need <= self.data.size:
            return
        size = max(need, 2 * self.data.size)
        size = (size + 15) // 16 * 16
        d = np.zeros(size, np.uint8)
        d[: self.data.size] = self.data
        i = np.zeros(size, bool)
        i[: self.init.size] = self.init
        self.data, self.init = d, i

    def alloc(self, nbytes: int, name: str = "", initialized: bool = True, align: int = 256) -> int:
        if nbytes < 0:
            raise ValueError("negative allocation size")
        off = (self.top + align - 1) // align * align
        self._grow(off + nbytes + _GAP)
        self.allocs.append(Allocation(GLOBAL_BASE + off, nbytes, name))
        self._starts = np.append(self._starts, GLOBAL_BASE + off)
        self._ends = np.append(self._ends, GLOBAL_BASE + off + nbytes)
        self.data[off:off + nbytes] = 0
        self.init[off:off + nbytes] = initialized
        self.top = off + max(nbytes, 1) + _GAP
        return GLOBAL_BASE + off

    def map(self, addr: int, nbytes: int, name: str = "", initialized: bool = False) -> int:
        """An allocation at a given address (a memory plan computed elsewhere, e.g. by the engine's C++ code):
        above every allocation so far, 16-byte aligned."""
        off = addr - GLOBAL_BASE
        if off < self.top or addr % 16:
            raise ValueError(f"cannot map 0x{addr:x}: below the allocations so far (next free 0x"
                             f"{GLOBAL_BASE + self.top:x}) or not 16-byte aligned")
        self._grow(off + nbytes + _GAP)
        self.allocs.append(Allocation(addr, nbytes, name))
        self._starts = np.append(self._starts, addr)
        self._ends = np.append(self._ends, addr + nbytes)
        self.init[off:off + nbytes] = initialized
        self.top = off + max(nbytes, 1) + _GAP
        return addr

    def next_free(self, align: int = 1 << 20) -> int:
        return GLOBAL_BASE + (self.top + align - 1) // align * align

    def write(self, addr: int, buf: np.ndarray) -> None:
        b = np.ascontiguousarray(buf).view(np.uint8).ravel()
        self.check_host(addr, b.size)
        off = addr - GLOBAL_BASE
        self.data[off:off + b.size] = b
        self.init[off:off + b.size] = True

    def read(self, addr: int, dtype, count: int) -> np.ndarray:
        n = np.dtype(dtype).itemsize * count
        self.check_host(addr, n)
        off = addr - GLOBAL_BASE
        return self.data[off:off + n].view(dtype).copy()

    def mark_uninitialized(self, addr: int, nbytes: int) -> None:
        self.check_host(addr, nbytes)
        off = addr - GLOBAL_BASE
        self.init[off:off + nbytes] = False

    def check_host(self, addr: int, n: int) -> None:
        bad = self.out_of_bounds(np.array([addr], np.int64), n)
        if n and bad[0]:
            raise ValueError(f"host access [0x{addr:x}, +{n}) is outside every allocation")

    def out_of_bounds(self, addrs: np.ndarray, nbytes) -> np.ndarray:
        """True where [addr, addr + nbytes) is not inside one allocation."""
        a = addrs.astype(np.int64)
        i = np.searchsorted(self._starts, a, side="right") - 1
        ok = i >= 0
        ic = np.clip(i, 0, max(len(self._starts) - 1, 0))
        if len(self._starts) == 0:
            return np.ones(a.shape, bool)
        ok &= (a >= self._starts[ic]) & (a + nbytes <= self._ends[ic])
        return ~ok

    def allocation_of(self, addr: int) -> Optional[Allocation]:
        for al in self.allocs:
            if al.start <= addr < al.start + max(al.size, 1) + _GAP:
                return al
        return None
