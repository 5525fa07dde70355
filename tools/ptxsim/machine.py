"""Execution of a kernel launch: a grid of CTAs of warps of 32 lanes, run in lockstep.

Scheduling. The CTAs of a launch run in chunks (all CTAs of a chunk together, chunks one after another: a
legal schedule, CTAs being independent apart from atomics). Within a chunk every thread has its own program
counter; each step runs the instruction at the lowest program counter for every thread that is there
(min-PC scheduling, the classic SIMT reconvergence rule for structured code: threads that branched apart
meet again at the first common instruction). Barriers and warp collectives only execute when all their
participants are at that instruction, otherwise it is a synccheck error: with min-PC scheduling a
participant that is elsewhere can only be ahead (it skipped the barrier) or exited.

Registers hold raw bits (numpy arrays of the declared width, one element per thread); each instruction
reads them as its own type."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from . import memory as M
from .errors import (CheckError, HangError, InitcheckError, LaunchError, MemcheckError, RacecheckError,
                     SynccheckError, UnsupportedInstruction)
from .parser import Function, Imm, Instr, Module, Neg, Reg, Sym, imm_int
from .ptxtypes import BITS, UINT, raw_to, to_raw

ALL = slice(None)
Idx = Union[slice, np.ndarray]
EXITED = np.iinfo(np.int64).max // 2

SPECIAL = {"%tid.x", "%tid.y", "%tid.z", "%ntid.x", "%ntid.y", "%ntid.z", "%ctaid.x", "%ctaid.y", "%ctaid.z",
           "%nctaid.x", "%nctaid.y", "%nctaid.z", "%laneid", "%warpid", "%nwarpid", "%lanemask_eq",
           "%lanemask_lt", "%lanemask_le", "%lanemask_gt", "%lanemask_ge", "%smid", "%gridid", "%clock",
           "%clock64", "%globaltimer", "%dynamic_smem_size", "%total_smem_size"}


# ---------------------------------------------------------------------------------------------- compiled code
@dataclass
class Op:
    """One compiled instruction."""
    instr: Instr
    func: str
    run: Callable  # run(st, idx) -> True when it set the program counters itself
    guard: Optional[str] = None
    guard_neg: bool = False
    barrier: bool = False      # CTA-wide: all live threads of each CTA must be here
    warp_all: bool = False     # .aligned warp-wide: all lanes of each participating warp must be here
    mask_op: Optional[object] = None  # operand of a member mask (shfl.sync, vote.sync, bar.warp.sync)
    synthetic: bool = False    # the op after a call (copies the results back): not a PTX instruction


@dataclass
class FnLayout:
    """Per function: where its code starts, its register renaming and its symbols."""
    fn: Function
    start: int
    prefix: str


@dataclass
class Program:
    kernel: str
    ops: List[Op]
    entry: Function
    shared_vars: Dict[str, Tuple[int, int]]   # name -> (offset, size)
    shared_static: int
    dynamic_shared: Optional[str]
    local_vars: Dict[str, Tuple[int, int]]
    local_size: int
    param_layout: List[Tuple[str, int, int]]  # kernel params: (name, offset, size)
    param_size: int
    thread_params: Dict[str, int]             # per-thread .param variables (call arguments): name -> size
    functions: Dict[str, int]                 # function name -> start
    reg_bits: Dict[str, int]
    hits: Optional[np.ndarray] = None         # per op: threads that issued it (coverage)

    def coverage(self) -> dict:
        """Static PTX instructions of this entry (and the functions it calls) and how many were issued by at
        least one thread; the opcodes (with modifiers) of each group."""
        real = [i for i, op in enumerate(self.ops) if not op.synthetic]
        hit = [i for i in real if self.hits is not None and self.hits[i] > 0]
        opcode = lambda i: ".".join((self.ops[i].instr.opcode,) + self.ops[i].instr.mods)  # noqa: E731
        return {"instructions": len(real), "executed": len(hit),
                "thread_instructions": int(self.hits.sum()) if self.hits is not None else 0,
                "opcodes": sorted({opcode(i) for i in real}), "opcodes_executed": sorted({opcode(i) for i in hit}),
                "lines_not_executed": [self.ops[i].instr.line for i in real if i not in set(hit)]}


class Compiler:
    """Links an entry with the functions it calls and compiles each instruction to a closure."""

    def __init__(self, module: Module, handlers: Dict[str, Callable], global_addr: Dict[str, int]):
        self.module, self.handlers, self.global_addr = module, handlers, global_addr

    def compile(self, entry_name: str) -> Program:
        entry = self.module.functions[entry_name]
        order: List[Function] = [entry]
        seen = {entry.name}
        i = 0
        while i < len(order):  # functions reached by call, transitively
            for ins in order[i].body:
                if ins.opcode == "call":
                    for o in ins.operands:
                        if isinstance(o, Sym) and o.name in self.module.functions and o.name not in seen:
                            seen.add(o.name)
                            order.append(self.module.functions[o.name])
                        elif isinstance(o, Sym) and o.name not in self.module.functions and o.name not in seen:
                            raise UnsupportedInstruction(f"{entry_name} line {ins.line} ({ins.text}): call of "
                                                         f"'{o.name}', which has no body in this module")
            i += 1
        starts, pos = {}, 0
        for f in order:
            starts[f.name] = pos
            pos += len(f.body) + sum(1 for ins in f.body if ins.opcode == "call")
        prog = Program(entry_name, [], entry, {}, 0, None, {}, 0, [], 0, {}, starts, {})
        # kernel parameters: natural layout (each aligned to its own alignment)
        off = 0
        for p in entry.params:
            off = (off + p.align - 1) // p.align * p.align
            prog.param_layout.append((p.name, off, p.size))
            off += p.size
        prog.param_size = off
        # shared and local variables of every linked function (names are unique per module in nvcc output)
        soff, loff = 0, 0
        for f in order:
            for v in f.vars:
                if v.space == "shared":
                    if v.size == 0:
                        prog.dynamic_shared = v.name
                        continue
                    soff = (soff + v.align - 1) // v.align * v.align
                    prog.shared_vars[v.name] = (soff, v.size)
                    soff += v.size
                elif v.space == "local":
                    loff = (loff + v.align - 1) // v.align * v.align
                    prog.local_vars[v.name] = (loff, v.size)
                    loff += v.size
                elif v.space == "param":
                    prog.thread_params[("" if f.is_entry else f.name + ":") + v.name] = v.size
            if not f.is_entry:
                for v in list(f.params) + list(f.returns):
                    prog.thread_params[f.name + ":" + v.name] = v.size
        for v in self.module.globals:
            if v.space == "shared" and v.size == 0:  # extern .shared x[]: the launch's dynamic shared memory
                prog.dynamic_shared = v.name
            elif v.space == "shared":
                soff = (soff + v.align - 1) // v.align * v.align
                prog.shared_vars[v.name] = (soff, v.size)
                soff += v.size
        prog.shared_static = (soff + 15) // 16 * 16
        if prog.dynamic_shared is not None:
            prog.shared_vars[prog.dynamic_shared] = (prog.shared_static, 0)
        prog.local_size = (loff + 15) // 16 * 16
        for f in order:
            ctx = FnContext(self, prog, f, starts)
            for j, ins in enumerate(f.body):
                prog.ops.append(ctx.compile(ins, j))
                if ins.opcode == "call":
                    prog.ops.append(ctx.after_call(ins))
        return prog


class FnContext:
    """What an instruction's compilation needs to know about its function."""

    def __init__(self, comp: Compiler, prog: Program, fn: Function, starts: Dict[str, int]):
        self.comp, self.prog, self.fn, self.starts = comp, prog, fn, starts
        self.prefix = "" if fn.is_entry else fn.name + ":"
        self.kernel_params = {name: (off, size) for name, off, size in prog.param_layout} if fn.is_entry else {}

    def fail(self, ins: Instr, why: str) -> UnsupportedInstruction:
        return UnsupportedInstruction(f"{self.prog.kernel} line {ins.line} ({ins.text}): {why}")

    def label(self, ins: Instr, name: str) -> int:
        if name not in self.fn.labels:
            raise self.fail(ins, f"unknown label {name}")
        j = self.fn.labels[name]
        # calls add one op after themselves: count them before the label
        extra = sum(1 for k in range(j) if self.fn.body[k].opcode == "call")
        return self.starts[self.fn.name] + j + extra

    def compile(self, ins: Instr, j: int) -> Op:
        h = self.comp.handlers.get(ins.opcode)
        if h is None:
            raise self.fail(ins, f"opcode '{ins.opcode}' is not implemented")
        op = Op(ins, self.fn.name, None)
        op.run = h(ins, self, op)
        if ins.guard is not None:
            op.guard = self.reg_name(ins, ins.guard)
            op.guard_neg = ins.guard_neg
        return op

    def after_call(self, ins: Instr) -> Op:
        from .ops_control import after_call
        op = Op(ins, self.fn.name, None, synthetic=True)
        op.run = after_call(ins, self, op)
        return op

    # -------------------------------------------------------------------- registers
    def reg_name(self, ins: Instr, name: str) -> str:
        if name in SPECIAL:
            return name
        t = self.fn.reg_type(name)
        if t is None:
            raise self.fail(ins, f"register {name} is not declared")
        full = self.prefix + name
        self.prog.reg_bits[full] = BITS[t]
        return full

    def reg_bits(self, full: str) -> int:
        return self.prog.reg_bits[full]

    def as_reg(self, o):
        if isinstance(o, Sym) and self.fn.reg_type(o.name) is not None:
            return Reg(o.name)
        return o

    def reader(self, ins: Instr, o, t: str) -> Callable:
        """Closure (st, idx) -> values of type t (numpy array over idx, or a numpy scalar)."""
        o = self.as_reg(o)
        if isinstance(o, Reg):
            if o.name in SPECIAL:
                nm = o.name
                return lambda st, idx: raw_to(st.special(nm)[idx], t)
            full = self.reg_name(ins, o.name)
            bits = self.reg_bits(full)
            if t == "pred" or bits == 1:
                return lambda st, idx: st.reg(full, bits)[idx].astype(bool) if t == "pred" else \
                    raw_to(st.reg(full, bits)[idx].astype(UINT[BITS[t]]), t)
            return lambda st, idx: raw_to(st.reg(full, bits)[idx], t)
        if isinstance(o, Imm):
            v = imm_value(o.text, t)
            return lambda st, idx: v
        if isinstance(o, Sym):
            addr = self.symbol_address(ins, o.name)
            v = raw_to(np.array([addr], np.uint64), t)[0]
            return lambda st, idx: v
        if isinstance(o, Neg):
            inner = self.reader(ins, o.item, "pred")
            return lambda st, idx: ~np.asarray(inner(st, idx), bool)
        raise self.fail(ins, f"operand {o} cannot be read as .{t}")

    def writer(self, ins: Instr, o, t: str) -> Callable:
        """Closure (st, idx, values) writing values of type t into the register o."""
        o = self.as_reg(o)
        if isinstance(o, Reg) and o.name == "%_" or (isinstance(o, Sym) and o.name == "_"):
            return lambda st, idx, v: None
        if not isinstance(o, Reg) or o.name in SPECIAL:
            raise self.fail(ins, f"operand {o} is not a writable register")
        full = self.reg_name(ins, o.name)
        bits = self.reg_bits(full)

        def w(st, idx, v):
            r = st.reg(full, bits)
            raw = to_raw(v, t, bits)
            r[idx] = raw
        return w

    def symbol_address(self, ins: Instr, name: str) -> int:
        if name in self.kernel_params:  # a kernel parameter's address in the .param space: its offset
            return self.kernel_params[name][0]
        if name in self.prog.shared_vars:
            return self.prog.shared_vars[name][0]
        if name in self.prog.local_vars:
            return self.prog.local_vars[name][0]
        if name in self.comp.global_addr:
            return self.comp.global_addr[name]
        raise self.fail(ins, f"symbol {name} has no address here")


def imm_value(text: str, t: str):
    if text[:2] in ("0f", "0F"):
        v = np.array([int(text[2:], 16)], np.uint32).view(np.float32)
        return raw_to(v.view(np.uint32), t)[0] if t != "f32" else v[0]
    if text[:2] in ("0d", "0D"):
        v = np.array([int(text[2:], 16)], np.uint64).view(np.float64)
        return v[0] if t == "f64" else raw_to(v.view(np.uint64), t)[0]
    iv = imm_int(text)
    if t == "pred":
        return np.bool_(iv != 0)
    if t in ("f32", "f64"):
        return np.dtype(np.float32 if t == "f32" else np.float64).type(iv)
    bits = BITS[t]
    u = np.array([iv & ((1 << bits) - 1)], UINT[bits])
    return raw_to(u, t)[0]


# ---------------------------------------------------------------------------------------------- state
class State:
    """The threads of one chunk of CTAs during a launch."""

    def __init__(self, dev, prog: Program, grid: Tuple[int, int, int], block: Tuple[int, int, int],
                 ctas: np.ndarray, params: bytes, dyn_smem: int):
        self.dev, self.prog = dev, prog
        self.grid, self.block = grid, block
        nthr = block[0] * block[1] * block[2]
        self.nthr, self.ncta = nthr, len(ctas)
        self.wpc = (nthr + 31) // 32
        T = nthr * self.ncta
        self.T = T
        t = np.arange(T, dtype=np.int64)
        local_t = t % nthr
        self.cta_local = t // nthr
        cta = ctas[self.cta_local]
        self.cta_linear = cta
        self.ctaid = (cta % grid[0], (cta // grid[0]) % grid[1], cta // (grid[0] * grid[1]))
        self.tid = (local_t % block[0], (local_t // block[0]) % block[1], local_t // (block[0] * block[1]))
        self.local_t = local_t
        self.warp = local_t // 32
        self.lane = local_t % 32
        self.gwarp = self.cta_local * self.wpc + self.warp
        self.regs: Dict[str, np.ndarray] = {}
        self.pc = np.zeros(T, np.int64)
        self.depth = np.zeros(T, np.int64)
        self.stack = np.zeros((T, 8), np.int64)
        self.carry = np.zeros(T, np.uint32)
        self.params = np.frombuffer(bytes(params) + bytes(16), np.uint8).copy()
        self.thread_params = {n: np.zeros((T, max(s, 8) + 8), np.uint8) for n, s in prog.thread_params.items()}
        S = prog.shared_static + dyn_smem
        self.smem_size = S
        Sp = (S + 15) // 16 * 16 or 16
        self.smem_stride = Sp
        self.smem = np.zeros(self.ncta * Sp, np.uint8)
        self.smem_init = np.zeros(self.ncta * Sp, bool)
        # racecheck: per shared byte, the warp (in its CTA) that wrote it / read it since the CTA's last barrier
        # (-1 none, -2 several readers) and the PTX line of that access
        self.w_warp = np.full(self.ncta * Sp, -1, np.int16)
        self.r_warp = np.full(self.ncta * Sp, -1, np.int16)
        self.w_line = np.zeros(self.ncta * Sp, np.int32)
        self.r_line = np.zeros(self.ncta * Sp, np.int32)
        L = prog.local_size or 16
        self.local_size = L
        self.lmem = np.zeros(T * L, np.uint8)
        self.lmem_init = np.zeros(T * L, bool)
        self.pending: List[dict] = []        # cp.async copies not yet landed
        self.committed = np.zeros(T, np.int64)  # commit groups closed per thread
        self.cur: Optional[Op] = None
        self.dyn_smem = dyn_smem
        self.steps = 0
        self._special: Dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- registers
    def reg(self, name: str, bits: int) -> np.ndarray:
        r = self.regs.get(name)
        if r is None:
            r = np.zeros(self.T, bool if bits == 1 else UINT[bits])
            self.regs[name] = r
        return r

    def special(self, name: str) -> np.ndarray:
        """A special register's value per thread (constant over a chunk, apart from the clocks: cached)."""
        hit = self._special.get(name)
        if hit is not None:
            return hit
        v = self._special_value(name)
        if not name.startswith(("%clock", "%globaltimer")):
            self._special[name] = v
        return v

    def _special_value(self, name: str) -> np.ndarray:
        T = self.T
        g, b = self.grid, self.block
        table = {
            "%tid.x": lambda: self.tid[0], "%tid.y": lambda: self.tid[1], "%tid.z": lambda: self.tid[2],
            "%ntid.x": lambda: np.full(T, b[0]), "%ntid.y": lambda: np.full(T, b[1]),
            "%ntid.z": lambda: np.full(T, b[2]),
            "%ctaid.x": lambda: self.ctaid[0], "%ctaid.y": lambda: self.ctaid[1], "%ctaid.z": lambda: self.ctaid[2],
            "%nctaid.x": lambda: np.full(T, g[0]), "%nctaid.y": lambda: np.full(T, g[1]),
            "%nctaid.z": lambda: np.full(T, g[2]),
            "%laneid": lambda: self.lane, "%warpid": lambda: self.warp, "%nwarpid": lambda: np.full(T, self.wpc),
            "%lanemask_eq": lambda: np.left_shift(1, self.lane),
            "%lanemask_lt": lambda: np.left_shift(1, self.lane) - 1,
            "%lanemask_le": lambda: np.left_shift(2, self.lane) - 1,
            "%lanemask_gt": lambda: (0xFFFFFFFF ^ (np.left_shift(2, self.lane) - 1)),
            "%lanemask_ge": lambda: (0xFFFFFFFF ^ (np.left_shift(1, self.lane) - 1)),
            "%dynamic_smem_size": lambda: np.full(T, self.dyn_smem),
            "%total_smem_size": lambda: np.full(T, self.smem_size),
            "%smid": lambda: self.cta_linear % 132, "%gridid": lambda: np.zeros(T),
            "%clock": lambda: np.full(T, self.steps), "%clock64": lambda: np.full(T, self.steps),
            "%globaltimer": lambda: np.full(T, self.steps),
        }
        if name not in table:
            raise UnsupportedInstruction(f"special register {name}")
        v = np.asarray(table[name]()).astype(np.int64)
        bits = 64 if name in ("%clock64", "%globaltimer") else 32
        return v.astype(UINT[bits])

    # ----------------------------------------------------------------- errors
    def who(self, t: int) -> Tuple[Tuple[int, int, int], Tuple[int, int, int]]:
        t = int(t)
        return ((int(self.ctaid[0][t]), int(self.ctaid[1][t]), int(self.ctaid[2][t])),
                (int(self.tid[0][t]), int(self.tid[1][t]), int(self.tid[2][t])))

    def error(self, cls, what: str, t: Optional[int] = None, address: Optional[int] = None) -> CheckError:
        ins = self.cur.instr if self.cur else None
        cta, thr = self.who(t) if t is not None else (None, None)
        from .cuda import demangle
        return cls(what, kernel=demangle(self.prog.kernel), line=ins.line if ins else 0, text=ins.text if ins else "",
                   cta=cta, thread=thr, address=address)

    # ----------------------------------------------------------------- shared memory checks
    def shared_access(self, threads: np.ndarray, offs: np.ndarray, nbytes: int, write: bool,
                      data: Optional[np.ndarray] = None, esize: int = 1, check_init: bool = True):
        """Bounds, alignment, initcheck and racecheck of one shared-memory access per thread, then the access.
        threads: thread indices (chunk), offs: shared-window offsets, nbytes: bytes per thread. For a write,
        data [n, count] of esize-byte elements; returns the loaded [n, count] for a read."""
        offs = offs.astype(np.int64)
        bad = (offs < 0) | (offs + nbytes > self.smem_size)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise self.error(MemcheckError, f"shared memory access of {nbytes} bytes outside the CTA's "
                             f"{self.smem_size} bytes of shared memory", threads[k], int(offs[k]))
        mis = offs % min(nbytes, 16) != 0 if nbytes in (1, 2, 4, 8, 16) else offs % esize != 0
        if np.any(mis):
            k = int(np.flatnonzero(mis)[0])
            raise self.error(MemcheckError, f"misaligned shared memory access of {nbytes} bytes", threads[k],
                             int(offs[k]))
        flat = self.cta_local[threads] * self.smem_stride + offs
        if self.dev.racecheck:
            self._race(threads, flat, nbytes, write)
        if write:
            M.scatter(self.smem, flat, esize, data)
            self.smem_init[M.byte_index(flat, nbytes).ravel()] = True
            return None
        if self.dev.initcheck and check_init:
            bi = M.byte_index(flat, nbytes)
            ok = self.smem_init[bi].all(axis=1)
            if not ok.all():
                k = int(np.flatnonzero(~ok)[0])
                raise self.error(InitcheckError, f"read of {nbytes} bytes of shared memory that no thread "
                                 f"has written", threads[k], int(offs[k]))
        return M.gather(self.smem, flat, esize, nbytes // esize)

    def _race(self, threads: np.ndarray, flat: np.ndarray, nbytes: int, write: bool) -> None:
        line = self.cur.instr.line if self.cur else 0
        warp = np.repeat(self.warp[threads].astype(np.int16), nbytes)
        bi = M.byte_index(flat, nbytes).ravel()
        thr_of = np.repeat(threads, nbytes)
        prev_w = self.w_warp[bi]
        hit = (prev_w >= 0) & (prev_w != warp)
        if write:
            prev_r = self.r_warp[bi]
            hit_r = (prev_r == -2) | ((prev_r >= 0) & (prev_r != warp))
        else:
            hit_r = np.zeros_like(hit)
        if hit.any() or hit_r.any():
            k = int(np.flatnonzero(hit | hit_r)[0])
            other = "write" if hit[k] else "read"
            oline = int(self.w_line[bi[k]] if hit[k] else self.r_line[bi[k]])
            byte = int(bi[k] % self.smem_stride)
            raise self.error(RacecheckError, f"{'write' if write else 'read'} by warp {int(warp[k])} races with a "
                             f"{other} by {'warp ' + str(int(prev_w[k])) if hit[k] else 'another warp'} at line "
                             f"{oline} with no barrier between them", thr_of[k], byte)
        # several warps touching the same byte in this one instruction
        if len(bi) > 1:
            order = np.argsort(bi, kind="stable")
            sb, sw = bi[order], warp[order]
            same = (sb[1:] == sb[:-1]) & (sw[1:] != sw[:-1])
            if write and same.any():
                k = int(order[1:][np.flatnonzero(same)[0]])
                raise self.error(RacecheckError, f"write by warp {int(warp[k])} races with a write by another "
                                 f"warp in the same instruction", thr_of[k], int(bi[k] % self.smem_stride))
        if write:
            self.w_warp[bi] = warp
            self.w_line[bi] = line
        else:
            prev_r = self.r_warp[bi]
            newr = np.where(prev_r == -1, warp, np.where(prev_r == warp, warp, -2)).astype(np.int16)
            self.r_warp[bi] = newr
            if len(bi) > 1:  # several warps reading one byte now
                order = np.argsort(bi, kind="stable")
                sb, sw = bi[order], warp[order]
                multi = (sb[1:] == sb[:-1]) & (sw[1:] != sw[:-1])
                if multi.any():
                    self.r_warp[sb[1:][multi]] = -2
            self.r_line[bi] = line

    def barrier_reset(self, ctas: np.ndarray) -> None:
        for c in np.unique(ctas):
            s = slice(int(c) * self.smem_stride, (int(c) + 1) * self.smem_stride)
            self.w_warp[s] = -1
            self.r_warp[s] = -1


# ---------------------------------------------------------------------------------------------- scheduler
def run_chunk(st: State, max_steps: int) -> int:
    ops = st.prog.ops
    end = len(ops)
    pc = st.pc
    if st.prog.hits is None:
        st.prog.hits = np.zeros(end, np.int64)
    hits = st.prog.hits
    executed = 0
    while True:
        m = int(pc.min())
        if m >= end:
            break
        st.steps += 1
        if st.steps > max_steps:
            raise st.error(HangError, f"more than {max_steps} steps (a spin wait or a runaway loop)",
                           int(np.flatnonzero(pc == m)[0]))
        if int(pc.max()) == m:
            idx: Idx = ALL
            n = st.T
        else:
            idx = np.flatnonzero(pc == m)
            n = len(idx)
        op = ops[m]
        st.cur = op
        hits[m] += n
        if op.barrier or op.warp_all or op.mask_op is not None:
            check_convergence(st, op, idx)
        act: Idx = idx
        if op.guard is not None:
            g = st.regs.get(op.guard)
            gv = np.zeros(n, bool) if g is None else np.asarray(g[idx], bool)
            if op.guard_neg:
                gv = ~gv
            if not gv.all():
                tidx = np.arange(st.T)[idx] if isinstance(idx, slice) else idx
                pc[tidx[~gv]] += 1
                act = tidx[gv]
                if len(act) == 0:
                    continue
        executed += n
        if not op.run(st, act):
            pc[act] += 1
    return executed


def check_convergence(st: State, op: Op, idx: Idx) -> None:
    """synccheck: a barrier needs every thread of each CTA that reaches it; a warp collective needs every lane
    of its member mask (an .aligned instruction: every lane of the warp) at this instruction."""
    if not st.dev.synccheck:
        return
    th = np.arange(st.T)[idx] if isinstance(idx, slice) else idx
    live = st.pc < EXITED
    if op.barrier:
        counts = np.bincount(st.cta_local[th], minlength=st.ncta)
        ctas = np.flatnonzero(counts)
        short = ctas[counts[ctas] != st.nthr]
        if len(short):
            c = int(short[0])
            here = np.zeros(st.T, bool)
            here[th] = True
            sel = st.cta_local == c
            k = int(np.flatnonzero(sel & ~here)[0])
            raise st.error(SynccheckError, f"barrier reached by {int(counts[c])} of the CTA's {st.nthr} threads "
                           f"(thread {st.who(k)[1]} {'has exited' if not live[k] else 'is elsewhere, past the barrier'})",
                           int(th[st.cta_local[th] == c][0]))
        return
    nw = st.ncta * st.wpc
    bits = np.left_shift(np.uint64(1), st.lane.astype(np.uint64))
    present = np.zeros(nw, np.uint64)
    np.add.at(present, st.gwarp[th], bits[th])
    if st.nthr % 32 == 0:
        exist = np.full(nw, np.uint64(0xFFFFFFFF))
    else:
        exist = np.zeros(nw, np.uint64)
        np.add.at(exist, st.gwarp, bits)
    if op.mask_op is not None:
        m = np.asarray(op.mask_op(st, idx)).astype(np.uint64)
        need = np.full(len(th), m) if m.ndim == 0 else m
    else:
        need = exist[st.gwarp[th]]
    missing = need & exist[st.gwarp[th]] & ~present[st.gwarp[th]]
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        mbits = int(missing[i])
        lane = (mbits & -mbits).bit_length() - 1
        k = int(th[i] - st.lane[th[i]] + lane)
        raise st.error(SynccheckError, f"warp collective reached by only part of its participants (lane {lane} "
                       f"{'has exited' if not live[k] else 'is elsewhere'})", int(th[i]))


# ---------------------------------------------------------------------------------------------- device
@dataclass
class LaunchStats:
    kernel: str
    grid: Tuple[int, int, int]
    block: Tuple[int, int, int]
    smem: int
    thread_instructions: int = 0
    steps: int = 0
    opcodes: Dict[str, int] = field(default_factory=dict)


class LoadedModule:
    def __init__(self, dev, module: Module, handlers: Dict[str, Callable]):  # dev: device.Device
        self.dev, self.module = dev, module
        self.global_addr: Dict[str, int] = {}
        for v in module.globals:
            if v.space in ("global", "const"):
                a = dev.gmem.alloc(max(v.size, 1), name=v.name, initialized=True, align=max(v.align, 16))
                if v.init:
                    dev.gmem.write(a, np.frombuffer(v.init, np.uint8))
                self.global_addr[v.name] = a
        self.compiler = Compiler(module, handlers, self.global_addr)
        self.programs: Dict[str, Program] = {}
        # compile every entry now: an instruction the interpreter does not implement fails here, loudly
        for name, f in module.functions.items():
            if f.is_entry:
                self.programs[name] = self.compiler.compile(name)

    def entry(self, name: str) -> str:
        """The entry whose mangled name is `name`, or whose demangled name starts with it."""
        if name in self.programs:
            return name
        from .cuda import demangle
        hits = []
        for k in self.programs:
            d = demangle(k)
            bare = re.sub(r"^void\s+", "", d)
            bare = bare[:bare.index("(")] if "(" in bare else bare
            if bare == name or d == name:
                hits.append(k)
        if len(hits) != 1:
            raise LaunchError(f"kernel '{name}' {'is ambiguous' if hits else 'is not in this module'}; entries: "
                              + ", ".join(demangle(k) for k in self.programs))
        return hits[0]
