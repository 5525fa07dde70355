"""Loads, stores, atomics, cp.async and fences, with memcheck, initcheck and (shared memory) racecheck."""

from __future__ import annotations

import numpy as np

from . import memory as M
from .errors import InitcheckError, MemcheckError
from .parser import Addr, Imm, Reg, Sym, Vec
from .memory import UINT as UB
from .opsutil import registry, threads
from .ptxtypes import BITS, VALUE, to_raw

SPACES = ("global", "shared", "local", "param", "const")
IGNORED = {"weak", "volatile", "relaxed", "acquire", "release", "acq_rel", "sys", "gpu", "cta", "cluster", "ca", "cg",
           "cs", "lu", "cv", "wb", "wt", "nc", "L1::no_allocate", "L1::evict_last", "L1::evict_first",
           "L1::evict_normal", "L1::evict_unchanged", "L2::64B", "L2::128B", "L2::256B", "L2::cache_hint", "sync",
           "aligned", "shared::cta", "mmio"}


H, handler = registry()
_all_idx = threads


def _space(ins):
    for m in ins.mods:
        if m in SPACES:
            return m
        if m == "shared::cta":
            return "shared"
    return "generic"


def address_reader(ins, ctx, o: Addr, space: str):
    """Closure (st, idx) -> int64/uint64 addresses of the operand (state-space or generic addresses)."""
    if not isinstance(o, Addr):
        raise ctx.fail(ins, f"operand {o} is not an address")
    off = o.offset
    o = Addr(ctx.as_reg(o.base), o.offset)
    if isinstance(o.base, Reg):
        full = ctx.reg_name(ins, o.base.name)
        bits = ctx.reg_bits(full)
        t = "u64" if bits == 64 else "u32"
        rd = ctx.reader(ins, o.base, t)

        def regaddr(st, idx):
            v = np.asarray(rd(st, idx)).astype(np.uint64)
            with np.errstate(over="ignore"):
                return v + np.uint64(off & 0xFFFFFFFFFFFFFFFF)
        return regaddr
    if isinstance(o.base, Imm):
        from .parser import imm_int
        v = np.uint64(imm_int(o.base.text) + off)
        return lambda st, idx: v
    name = o.base.name
    if space == "param":
        raise ctx.fail(ins, "internal: param symbols are handled by the param access")
    base = ctx.symbol_address(ins, name)
    if space == "generic":
        if name in ctx.prog.shared_vars:
            base += M.SHARED_WINDOW
        elif name in ctx.prog.local_vars:
            base += M.LOCAL_WINDOW
    v = np.uint64(base + off)
    return lambda st, idx: v


# ---------------------------------------------------------------------------------------------- raw access
def access(st, threads: np.ndarray, space: str, addrs: np.ndarray, esize: int, count: int, write: bool,
           data=None, check_init: bool = True):
    """One access per thread of count elements of esize bytes; returns [n, count] raw elements for a read."""
    addrs = np.asarray(addrs).astype(np.uint64)
    if addrs.ndim == 0:
        addrs = np.full(len(threads), addrs, np.uint64)
    nbytes = esize * count
    if space == "generic":
        out = np.zeros((len(threads), count), UB[esize]) if not write else None
        a64 = addrs.astype(np.uint64)
        win_s = (a64 >= np.uint64(M.SHARED_WINDOW)) & (a64 < np.uint64(M.SHARED_WINDOW + M.WINDOW_SIZE))
        win_l = (a64 >= np.uint64(M.LOCAL_WINDOW)) & (a64 < np.uint64(M.LOCAL_WINDOW + M.WINDOW_SIZE))
        win_g = ~(win_s | win_l)
        for sel, sp, base in ((win_g, "global", 0), (win_s, "shared", M.SHARED_WINDOW),
                              (win_l, "local", M.LOCAL_WINDOW)):
            if sel.any():
                r = access(st, threads[sel], sp, a64[sel] - np.uint64(base), esize, count, write,
                           None if data is None else data[sel], check_init)
                if not write:
                    out[sel] = r
        return out
    if space == "shared":
        return st.shared_access(threads, addrs.astype(np.int64), nbytes, write, data, esize, check_init)
    if space == "global" or space == "const":
        g = st.dev.gmem
        a = addrs.astype(np.int64)
        bad = g.out_of_bounds(a, nbytes)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            al = g.allocation_of(int(a[k]))
            near = f" (just past allocation '{al.name}' of {al.size} bytes at 0x{al.start:x})" if al else ""
            raise st.error(MemcheckError, f"{'write' if write else 'read'} of {nbytes} bytes outside every "
                           f"allocation{near}", threads[k], int(a[k]))
        align = min(nbytes, 16)
        mis = a % align != 0
        if mis.any():
            k = int(np.flatnonzero(mis)[0])
            raise st.error(MemcheckError, f"misaligned {'write' if write else 'read'} of {nbytes} bytes",
                           threads[k], int(a[k]))
        offs = a - M.GLOBAL_BASE
        if write:
            M.scatter(g.data, offs, esize, data)
            g.init[M.byte_index(offs, nbytes).ravel()] = True
            return None
        if st.dev.initcheck and check_init:
            ok = g.init[M.byte_index(offs, nbytes)].all(axis=1)
            if not ok.all():
                k = int(np.flatnonzero(~ok)[0])
                raise st.error(InitcheckError, f"read of {nbytes} bytes of device memory marked uninitialised "
                               f"that nothing wrote", threads[k], int(a[k]))
        return M.gather(g.data, offs, esize, count)
    if space == "local":
        a = addrs.astype(np.int64)
        L = st.local_size
        bad = (a < 0) | (a + nbytes > st.prog.local_size)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise st.error(MemcheckError, f"local memory access of {nbytes} bytes outside the thread's "
                           f"{st.prog.local_size} bytes", threads[k], int(a[k]))
        mis = a % min(nbytes, 16) != 0
        if mis.any():
            k = int(np.flatnonzero(mis)[0])
            raise st.error(MemcheckError, "misaligned local memory access", threads[k], int(a[k]))
        flat = threads.astype(np.int64) * L + a
        if write:
            M.scatter(st.lmem, flat, esize, data)
            st.lmem_init[M.byte_index(flat, nbytes).ravel()] = True
            return None
        if st.dev.initcheck and check_init:
            ok = st.lmem_init[M.byte_index(flat, nbytes)].all(axis=1)
            if not ok.all():
                k = int(np.flatnonzero(~ok)[0])
                raise st.error(InitcheckError, "read of local memory that the thread never wrote", threads[k], int(a[k]))
        return M.gather(st.lmem, flat, esize, count)
    raise st.error(MemcheckError, f"access to .{space} is not implemented")


def _param_access(ins, ctx, o: Addr):
    """(kind, key, offset): kernel parameter block or a per-thread call parameter."""
    if not isinstance(o.base, Sym):
        raise ctx.fail(ins, "a .param access through a register is not implemented")
    name = o.base.name
    if name in ctx.kernel_params:
        off, size = ctx.kernel_params[name]
        return "kernel", size, off + o.offset
    key = ctx.prefix + name
    if key in ctx.prog.thread_params:
        return "thread", key, o.offset
    raise ctx.fail(ins, f"parameter {name} is not declared")


# ---------------------------------------------------------------------------------------------- ld / st
def _vec_count(ins, ctx):
    for m in ins.mods:
        if m in ("v2", "v4", "v8"):
            return int(m[1:])
    return 1


def _check(ins, ctx, extra=()):
    for m in ins.mods:
        if m not in IGNORED and m not in SPACES and m not in BITS and m not in ("v2", "v4", "v8") and m not in extra:
            raise ctx.fail(ins, f"modifier .{m} of {ins.opcode} is not implemented")


def _shape(ins, ctx, regs):
    """ld/st: (type, vector count, element bytes, state space, the register operands)."""
    _check(ins, ctx)
    t = [m for m in ins.mods if m in BITS][-1]
    count = _vec_count(ins, ctx)
    items = list(regs.items) if isinstance(regs, Vec) else [regs]
    if len(items) != count:
        raise ctx.fail(ins, "vector width and register count differ")
    return t, count, max(1, BITS[t] // 8), _space(ins), items


@handler("ld", "ldu")
def h_ld(ins, ctx, op):
    d, a = ins.operands
    t, count, esize, space, dsts = _shape(ins, ctx, d)
    wrs = [ctx.writer(ins, x, t) for x in dsts]
    if space == "param" and isinstance(a, Addr) and isinstance(ctx.as_reg(a.base), Reg):
        if not ctx.fn.is_entry:
            raise ctx.fail(ins, "a .param load through a register inside a function is not implemented")
        ra = address_reader(ins, ctx, Addr(ctx.as_reg(a.base), a.offset), "global")
        nb = esize * count

        def runp(st, idx):
            th = _all_idx(st, idx)
            ad = np.asarray(ra(st, idx)).astype(np.int64)
            ad = np.full(len(th), ad) if ad.ndim == 0 else ad
            bad = (ad < 0) | (ad + nb > st.prog.param_size) | (ad % min(nb, 16) != 0)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise st.error(MemcheckError, f"kernel parameter read of {nb} bytes outside the "
                               f"{st.prog.param_size}-byte parameter block or misaligned", th[k], int(ad[k]))
            raw = M.gather(st.params, ad, esize, count)
            for i, w in enumerate(wrs):
                w(st, idx, np.ascontiguousarray(raw[:, i]).view(VALUE[t]))
        return runp
    if space == "param":
        kind, key, off = _param_access(ins, ctx, a)
        if kind == "kernel":
            if off + esize * count > key + ctx.kernel_params[a.base.name][0]:
                raise ctx.fail(ins, "read past the end of the parameter")

            def runk(st, idx):
                n = len(_all_idx(st, idx))
                raw = st.params[off:off + esize * count].view(UB[esize])
                for i, w in enumerate(wrs):
                    w(st, idx, np.full(n, raw[i], UB[esize]).view(VALUE[t]))
            return runk

        def runt(st, idx):
            buf = st.thread_params[key]
            th = _all_idx(st, idx)
            raw = buf[th, off:off + esize * count].copy().view(UB[esize])
            for i, w in enumerate(wrs):
                w(st, idx, raw[:, i].view(VALUE[t]))
        return runt
    ra = address_reader(ins, ctx, a, space)

    def run(st, idx):
        th = _all_idx(st, idx)
        raw = access(st, th, space, ra(st, idx), esize, count, False)
        for i, w in enumerate(wrs):
            col = np.ascontiguousarray(raw[:, i])
            w(st, idx, col.view(VALUE[t]) if t in VALUE and t != "bf16" else col)
    return run


@handler("st")
def h_st(ins, ctx, op):
    a, s = ins.operands
    t, count, esize, space, srcs = _shape(ins, ctx, s)
    rds = [ctx.reader(ins, x, t) for x in srcs]

    def values(st, idx, n):
        cols = []
        for r in rds:
            v = np.asarray(r(st, idx))
            if v.ndim == 0:
                v = np.full(n, v)
            cols.append(to_raw(v.astype(VALUE[t]) if t in VALUE else v, t, esize * 8))
        return np.stack(cols, axis=1)

    if space == "param":
        kind, key, off = _param_access(ins, ctx, a)
        if kind == "kernel":
            raise ctx.fail(ins, "a store to a kernel parameter is not implemented")

        def runt(st, idx):
            th = _all_idx(st, idx)
            raw = values(st, idx, len(th)).astype(UB[esize])
            st.thread_params[key][th, off:off + esize * count] = raw.view(np.uint8).reshape(len(th), -1)
        return runt
    ra = address_reader(ins, ctx, a, space)

    def run(st, idx):
        th = _all_idx(st, idx)
        access(st, th, space, ra(st, idx), esize, count, True, values(st, idx, len(th)))
    return run


# ---------------------------------------------------------------------------------------------- atomics
_ATOM = {"add", "min", "max", "inc", "dec", "and", "or", "xor", "exch", "cas"}


@handler("atom", "red")
def h_atom(ins, ctx, op):
    opn = [m for m in ins.mods if m in _ATOM]
    if len(opn) != 1:
        raise ctx.fail(ins, "atomic operation not understood")
    opn = opn[0]
    _check(ins, ctx, extra=_ATOM | {"noftz"})
    t = [m for m in ins.mods if m in BITS][-1]
    esize = BITS[t] // 8
    space = _space(ins)
    if ins.opcode == "atom":
        d, a, b = ins.operands[:3]
        wr = ctx.writer(ins, d, t)
    else:
        a, b = ins.operands[:2]
        wr = None
    rb = ctx.reader(ins, b, t)
    rc = ctx.reader(ins, ins.operands[-1], t) if opn == "cas" else None
    ra = address_reader(ins, ctx, a, space)

    def run(st, idx):
        th = _all_idx(st, idx)
        n = len(th)
        addrs = np.asarray(ra(st, idx)).astype(np.uint64)
        if addrs.ndim == 0:
            addrs = np.full(n, addrs)
        bv = np.asarray(rb(st, idx))
        bv = np.full(n, bv) if bv.ndim == 0 else bv
        cv = None
        if rc is not None:
            cv = np.asarray(rc(st, idx))
            cv = np.full(n, cv) if cv.ndim == 0 else cv
        old = np.zeros(n, VALUE[t])
        # thread order: each atomic sees the ones before it (a legal serialisation)
        for i in range(n):
            cur = access(st, th[i:i + 1], space, addrs[i:i + 1], esize, 1, False)[0, 0]
            cur_v = np.array([cur], UB[esize]).view(VALUE[t])[0]
            old[i] = cur_v
            x = bv[i]
            with np.errstate(all="ignore"):
                if opn == "add":
                    new = cur_v + x
                elif opn == "min":
                    new = min(cur_v, x)
                elif opn == "max":
                    new = max(cur_v, x)
                elif opn == "and":
                    new = cur_v & x
                elif opn == "or":
                    new = cur_v | x
                elif opn == "xor":
                    new = cur_v ^ x
                elif opn == "exch":
                    new = x
                elif opn == "inc":
                    new = 0 if cur_v >= x else cur_v + 1
                elif opn == "dec":
                    new = x if (cur_v == 0 or cur_v > x) else cur_v - 1
                else:  # cas
                    new = cv[i] if cur_v == x else cur_v
            raw = np.array([new], VALUE[t]).view(UB[esize])
            access(st, th[i:i + 1], space, addrs[i:i + 1], esize, 1, True, raw.reshape(1, 1))
        if wr is not None:
            wr(st, idx, old)
    return run


# ---------------------------------------------------------------------------------------------- fences etc.
@handler("membar", "fence", "nanosleep", "prefetch", "prefetchu", "pmevent")
def h_noop(ins, ctx, op):
    # The interpreter's memory is sequentially consistent: every store is visible to every later
    # instruction, so a fence is an ordering point with nothing left to order.
    return lambda st, idx: None


# ---------------------------------------------------------------------------------------------- cp.async
@handler("cp")
def h_cp(ins, ctx, op):
    mods = ins.mods
    if not mods or mods[0] != "async":
        raise ctx.fail(ins, f"cp.{'.'.join(mods)} is not implemented")
    rest = mods[1:]
    if rest == ("commit_group",):
        def commit(st, idx):
            st.committed[idx] += 1
        return commit
    if rest and rest[0] in ("wait_group", "wait_all"):
        if rest[0] == "wait_all":
            keep = 0
            commit_first = True
        else:
            from .parser import imm_int
            if not ins.operands or not isinstance(ins.operands[0], Imm):
                raise ctx.fail(ins, "wait_group needs an immediate")
            keep = imm_int(ins.operands[0].text)
            commit_first = False

        def wait(st, idx):
            th = _all_idx(st, idx)
            if commit_first:
                st.committed[th] += 1
            land(st, th, keep)
        return wait
    if rest[:1] in (("ca",), ("cg",)) and "shared" in " ".join(rest) and "global" in rest:
        for m in rest:
            if m not in ("ca", "cg", "shared", "shared::cta", "global", "L2::cache_hint", "L2::64B", "L2::128B",
                         "L2::256B"):
                raise ctx.fail(ins, f"cp.async modifier .{m} is not implemented")
        dst, src, size = ins.operands[:3]
        if not isinstance(size, Imm):
            raise ctx.fail(ins, "cp-size must be an immediate")
        from .parser import imm_int
        cp = imm_int(size.text)
        if cp not in (4, 8, 16) or (rest[0] == "cg" and cp != 16):
            raise ctx.fail(ins, f"cp.async.{rest[0]} of {cp} bytes is not a valid form")
        rsize = None
        ignore = None
        if len(ins.operands) >= 4:
            x = ins.operands[3]
            if isinstance(x, Reg) and ctx.fn.reg_type(x.name) == "pred":
                ignore = ctx.reader(ins, x, "pred")
            else:
                rsize = ctx.reader(ins, x, "u32")
        rd = address_reader(ins, ctx, dst, "shared")
        rs = address_reader(ins, ctx, src, "global")

        def issue(st, idx):
            th = _all_idx(st, idx)
            n = len(th)
            d = np.asarray(rd(st, idx)).astype(np.int64)
            d = np.full(n, d) if d.ndim == 0 else d
            s = np.asarray(rs(st, idx)).astype(np.uint64)
            s = np.full(n, s) if s.ndim == 0 else s
            if rsize is not None:
                ss = np.asarray(rsize(st, idx)).astype(np.int64)
                ss = np.full(n, ss) if ss.ndim == 0 else ss
            else:
                ss = np.full(n, cp, np.int64)
            if ignore is not None:
                ig = np.asarray(ignore(st, idx), bool)
                ss = np.where(np.full(n, ig) if ig.ndim == 0 else ig, 0, ss)
            if (ss > cp).any() or (ss < 0).any():
                k = int(np.flatnonzero((ss > cp) | (ss < 0))[0])
                raise st.error(MemcheckError, f"cp.async src-size {int(ss[k])} outside [0, {cp}]", th[k])
            # destination: inside the CTA's shared memory and aligned to the copy size (checked at issue)
            bad = (d < 0) | (d + cp > st.smem_size) | (d % cp != 0)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise st.error(MemcheckError, f"cp.async destination of {cp} bytes outside shared memory or "
                               f"misaligned", th[k], int(d[k]))
            data = np.zeros((n, cp), np.uint8)
            for nb in np.unique(ss):  # read only the src-size bytes (the rest is zero-filled)
                nb = int(nb)
                if nb == 0:
                    continue
                sel = ss == nb
                data[sel, :nb] = _read_bytes(st, th[sel], s[sel], nb, cp)
            st.pending.append({"threads": th.copy(), "dst": d, "data": data, "group": st.committed[th].copy(),
                               "line": ins.line})
        return issue
    raise ctx.fail(ins, f"cp.{'.'.join(mods)} is not implemented")


def _read_bytes(st, th, addrs, nbytes, align):
    """nbytes from each global address (checked like a load of that size; alignment of the copy size)."""
    g = st.dev.gmem
    a = addrs.astype(np.int64)
    bad = g.out_of_bounds(a, nbytes)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise st.error(MemcheckError, f"cp.async read of {nbytes} bytes outside every allocation", th[k], int(a[k]))
    mis = a % align != 0
    if mis.any():
        k = int(np.flatnonzero(mis)[0])
        raise st.error(MemcheckError, f"misaligned cp.async source ({align}-byte copy)", th[k], int(a[k]))
    offs = a - M.GLOBAL_BASE
    bi = M.byte_index(offs, nbytes)
    if st.dev.initcheck:
        ok = g.init[bi].all(axis=1)
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise st.error(InitcheckError, "cp.async read of device memory marked uninitialised", th[k], int(a[k]))
    return g.data[bi]


def land(st, th: np.ndarray, keep: int) -> None:
    """The copies of threads th whose commit group is older than the `keep` most recent ones land now."""
    still = []
    member = np.zeros(st.T, bool)
    member[th] = True
    for p in st.pending:
        t = p["threads"]
        due = member[t] & (p["group"] < st.committed[t] - keep)
        if due.any():
            sel = np.flatnonzero(due)
            st.shared_access(t[sel], p["dst"][sel], p["data"].shape[1], True, p["data"][sel], 1)
        if not due.all():
            rest = ~due
            still.append({k: (v[rest] if isinstance(v, np.ndarray) else v) for k, v in p.items()})
    st.pending = still
