"""The interpreted device: memory, loaded modules and launches."""

from __future__ import annotations

import struct
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from . import memory as M
from .errors import LaunchError
from .machine import LaunchStats, LoadedModule, State, run_chunk
from .parser import Module, parse

Dim = Union[int, Tuple[int, ...]]


def _dim3(d: Dim) -> Tuple[int, int, int]:
    t = (d,) if isinstance(d, int) else tuple(d)
    t = tuple(int(x) for x in t) + (1,) * (3 - len(t))
    if len(t) != 3 or min(t) < 1:
        raise LaunchError(f"bad dimension {d}")
    return t  # type: ignore[return-value]


def handlers():
    from . import ops_alu, ops_control, ops_memory, ops_warp
    h = {}
    for m in (ops_alu, ops_memory, ops_control, ops_warp):
        h.update(m.H)
    return h


class Device:
    """A device for the interpreter.

    approx: "bound" (default) returns approximate instructions' results moved by their full documented
    error; "exact" returns the correctly rounded value. The checks can be switched off one by one (a test
    that wants to see a wrong result rather than the first error)."""

    def __init__(self, approx: str = "bound", memcheck: bool = True, initcheck: bool = True, racecheck: bool = True,
                 synccheck: bool = True, max_steps: int = 5_000_000, chunk_threads: int = 16384):
        if approx not in ("bound", "exact"):
            raise ValueError("approx must be 'bound' or 'exact'")
        self.approx = approx
        self.memcheck, self.initcheck, self.racecheck, self.synccheck = memcheck, initcheck, racecheck, synccheck
        self.max_steps, self.chunk_threads = max_steps, chunk_threads
        self.gmem = M.GlobalMemory()
        self._handlers = handlers()
        self.history: list = []

    # ------------------------------------------------------------------------------ memory
    def alloc(self, nbytes: int, name: str = "", initialized: bool = True) -> int:
        return self.gmem.alloc(int(nbytes), name=name, initialized=initialized)

    def upload(self, array: np.ndarray, name: str = "") -> int:
        a = np.ascontiguousarray(array)
        addr = self.alloc(a.nbytes, name)
        self.gmem.write(addr, a)
        return addr

    def write(self, addr: int, array: np.ndarray) -> None:
        self.gmem.write(addr, np.ascontiguousarray(array))

    def read(self, addr: int, dtype, count: int) -> np.ndarray:
        return self.gmem.read(addr, dtype, int(count))

    def memset(self, addr: int, value: int, nbytes: int) -> None:
        self.gmem.write(addr, np.full(int(nbytes), value & 0xFF, np.uint8))

    # ------------------------------------------------------------------------------ modules
    def load(self, ptx: Union[str, Module]) -> LoadedModule:
        mod = parse(ptx) if isinstance(ptx, str) else ptx
        return LoadedModule(self, mod, self._handlers)

    # ------------------------------------------------------------------------------ launches
    def launch(self, module: LoadedModule, kernel: str, grid: Dim, block: Dim, args: Sequence = (), smem: int = 0,
               ctas: Optional[Iterable[int]] = None) -> LaunchStats:
        """Runs kernel (mangled or demangled name) over the grid. args: one entry per kernel parameter, raw
        bytes (what a C++ launcher passes) or a Python number / device address packed as the parameter's
        PTX type. ctas: only these CTAs (linear indices), for tests that look at one CTA."""
        name = module.entry(kernel)
        prog = module.programs[name]
        g, b = _dim3(grid), _dim3(block)
        nthr = b[0] * b[1] * b[2]
        if nthr > 1024 or b[2] > 64:
            raise LaunchError(f"block {b} has more than 1024 threads or z > 64")
        if g[0] > 2**31 - 1 or g[1] > 65535 or g[2] > 65535:
            raise LaunchError(f"grid {g} exceeds the device limits")
        maxn = prog.entry.directives.get("maxntid") or prog.entry.directives.get("reqntid")
        if maxn is not None:
            lim = 1
            for x in maxn:
                lim *= x
            if nthr > lim:
                raise LaunchError(f"block of {nthr} threads exceeds the kernel's .maxntid {maxn}")
        if smem and prog.dynamic_shared is None:
            raise LaunchError(f"{smem} bytes of dynamic shared memory for a kernel that declares none")
        total = prog.shared_static + int(smem)
        if total > 227 * 1024:
            raise LaunchError(f"{total} bytes of shared memory per CTA exceed 227 KiB")
        params = self._pack(prog, args)
        stats = LaunchStats(name, g, b, int(smem))
        all_ctas = np.arange(g[0] * g[1] * g[2], dtype=np.int64) if ctas is None else np.asarray(list(ctas), np.int64)
        per = max(1, self.chunk_threads // nthr)
        for s in range(0, len(all_ctas), per):
            st = State(self, prog, g, b, all_ctas[s:s + per], params, int(smem))
            stats.thread_instructions += run_chunk(st, self.max_steps)
            stats.steps += st.steps
        self.history.append(stats)
        return stats

    @staticmethod
    def _pack(prog, args: Sequence) -> bytes:
        layout = prog.param_layout
        if len(args) != len(layout):
            raise LaunchError(f"{prog.kernel} takes {len(layout)} parameters, {len(args)} given")
        buf = bytearray(prog.param_size)
        decls = {p.name: p for p in prog.entry.params}
        for (name, off, size), a in zip(layout, args):
            if isinstance(a, (bytes, bytearray, memoryview)):
                a = bytes(a)
                if len(a) != size:
                    raise LaunchError(f"parameter {name}: {len(a)} bytes given, the entry declares {size}")
                buf[off:off + size] = a
                continue
            t = decls[name].type
            fmt = {"u64": "<Q", "b64": "<Q", "s64": "<q", "u32": "<I", "b32": "<I", "s32": "<i", "f32": "<f",
                   "f64": "<d", "u16": "<H", "s16": "<h", "b16": "<H", "u8": "<B", "s8": "<b", "b8": "<B"}.get(t)
            if fmt is None or struct.calcsize(fmt) != size:
                raise LaunchError(f"parameter {name} (.{t}, {size} bytes) needs raw bytes")
            if fmt[-1] in "QIHB" and isinstance(a, int) and a < 0:
                a &= (1 << (8 * size)) - 1
            buf[off:off + size] = struct.pack(fmt, a)
        return bytes(buf)
