"""Warp-level instructions: shfl.sync, vote.sync, match.sync, activemask, bar.warp.sync, and the tensor-core
data movement and arithmetic: ldmatrix, mma.sync m16n8k16, wmma m16n16k16.

Fragment layouts of ldmatrix and mma are those of the PTX ISA ("Matrix fragments for mma.m16n8k16",
"ldmatrix"). WMMA fragments are opaque in the PTX ISA (their layout is not specified, code may only pass
them between wmma instructions or apply the same operation to every element); the interpreter uses its own
layout, documented at wmma_layout, which is sound for any code that respects that rule.

Tensor-core accumulation: the sum of the exact products and C is formed in FP64 and rounded once to FP32.
Hardware may add in another order and with truncation; a kernel's tolerance must cover that (the tactic
tolerance does: it allows for FP32 accumulation of K terms)."""

from __future__ import annotations

import numpy as np

from .errors import SynccheckError
from .opsutil import full, registry, threads
from .parser import Imm, Pair, Vec, imm_int
from .ptxtypes import VALUE, bf16_to_f32

H, handler = registry()
_th, _full = threads, full


def warps_of(st, th):
    """th (sorted, whole warps) -> [W, 32] thread indices; synccheck error for a partial warp."""
    if len(th) % 32 or st.nthr % 32:
        raise st.error(SynccheckError, "a .aligned warp instruction in a CTA whose size is not a multiple of 32",
                       int(th[0]))
    return th.reshape(-1, 32)


# ---------------------------------------------------------------------------------------------- shfl
@handler("shfl")
def h_shfl(ins, ctx, op):
    mods = ins.mods
    if "sync" not in mods:
        raise ctx.fail(ins, "shfl without .sync (removed in PTX 6.4+ for sm_70) is not implemented")
    mode = next((m for m in mods if m in ("up", "down", "bfly", "idx")), None)
    if mode is None or "b32" not in mods:
        raise ctx.fail(ins, "shfl form not understood")
    d, a, b, c, mask = ins.operands
    wd = ctx.writer(ins, d.first if isinstance(d, Pair) else d, "b32")
    wp = ctx.writer(ins, d.second, "pred") if isinstance(d, Pair) else None
    ra, rb, rc, rm = (ctx.reader(ins, x, "b32") for x in (a, b, c, mask))
    op.mask_op = lambda st, idx: rm(st, idx)

    def run(st, idx):
        th = _th(st, idx)
        n = len(th)
        val = np.zeros(st.T, np.uint32)
        val[th] = _full(ra(st, idx), n)
        bval = _full(rb(st, idx), n).astype(np.int64)
        cval = _full(rc(st, idx), n).astype(np.int64)
        mval = _full(rm(st, idx), n).astype(np.int64)
        lane = st.lane[th].astype(np.int64)
        clamp = cval & 0x1F
        segmask = (cval >> 8) & 0x1F
        max_lane = (lane & segmask) | (clamp & ~segmask)
        min_lane = lane & segmask
        if mode == "up":
            j = lane - bval
            pval = j >= max_lane
        elif mode == "down":
            j = lane + bval
            pval = j <= max_lane
        elif mode == "bfly":
            j = lane ^ bval
            pval = j <= max_lane
        else:
            j = min_lane | (bval & 0x1F & ~segmask)
            pval = j <= max_lane
        j = np.where(pval, j, lane)
        src = th - lane + j
        here = np.zeros(st.T, bool)
        here[th] = True
        in_cta = (st.local_t[th] - lane + j) < st.nthr
        in_mask = ((mval >> j) & 1) == 1
        ok = in_cta & in_mask
        ok[ok] &= here[src[ok]]
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise st.error(SynccheckError, f"shfl.sync reads lane {int(j[k])}, which is not in the member mask "
                           f"or not executing this shfl", int(th[k]))
        wd(st, idx, val[src])
        if wp is not None:
            wp(st, idx, pval)
    return run


@handler("vote")
def h_vote(ins, ctx, op):
    mods = ins.mods
    if "sync" not in mods:
        raise ctx.fail(ins, "vote without .sync is not implemented")
    kind = next((m for m in mods if m in ("all", "any", "uni", "ballot")), None)
    d, a, mask = ins.operands
    ra = ctx.reader(ins, a, "pred")
    rm = ctx.reader(ins, mask, "b32")
    op.mask_op = lambda st, idx: rm(st, idx)
    wr = ctx.writer(ins, d, "b32" if kind == "ballot" else "pred")

    def run(st, idx):
        th = _th(st, idx)
        n = len(th)
        p = _full(ra(st, idx), n).astype(bool)
        out = np.zeros(n, np.uint32 if kind == "ballot" else bool)
        for w in np.unique(st.gwarp[th]):
            sel = st.gwarp[th] == w
            pv = p[sel]
            if kind == "ballot":
                out[sel] = np.uint32(np.sum(np.left_shift(1, st.lane[th][sel][pv].astype(np.int64))))
            elif kind == "all":
                out[sel] = pv.all()
            elif kind == "any":
                out[sel] = pv.any()
            else:
                out[sel] = pv.all() or not pv.any()
        wr(st, idx, out)
    return run


@handler("activemask")
def h_activemask(ins, ctx, op):
    (d,) = ins.operands
    wr = ctx.writer(ins, d, "b32")

    def run(st, idx):
        th = _th(st, idx)
        out = np.zeros(len(th), np.uint32)
        for w in np.unique(st.gwarp[th]):
            sel = st.gwarp[th] == w
            out[sel] = np.uint32(np.sum(np.left_shift(1, st.lane[th][sel].astype(np.int64))))
        wr(st, idx, out)
    return run


def h_bar_warp(ins, ctx, op):
    (mask,) = ins.operands
    rm = ctx.reader(ins, mask, "b32")
    op.mask_op = lambda st, idx: rm(st, idx)
    return lambda st, idx: None


@handler("match")
def h_match(ins, ctx, op):
    raise ctx.fail(ins, "match.sync is not implemented (no kernel of the project uses it)")


# ---------------------------------------------------------------------------------------------- ldmatrix
@handler("ldmatrix")
def h_ldmatrix(ins, ctx, op):
    from .ops_memory import address_reader
    mods = set(ins.mods)
    if not {"sync", "aligned", "m8n8", "b16"} <= mods or not ("shared" in mods or "shared::cta" in mods):
        raise ctx.fail(ins, "ldmatrix form not implemented (m8n8 .b16 from shared memory is)")
    nmat = 4 if "x4" in mods else 2 if "x2" in mods else 1 if "x1" in mods else None
    if nmat is None:
        raise ctx.fail(ins, "ldmatrix needs .x1/.x2/.x4")
    trans = "trans" in mods
    d, a = ins.operands
    if not isinstance(d, Vec) or len(d.items) != nmat:
        raise ctx.fail(ins, "ldmatrix destination count")
    wrs = [ctx.writer(ins, x, "b32") for x in d.items]
    ra = address_reader(ins, ctx, a, "shared")
    op.warp_all = True

    def run(st, idx):
        th = _th(st, idx)
        W = warps_of(st, th)                      # [w, 32]
        addr = _full(ra(st, idx), len(th)).astype(np.int64).reshape(W.shape)
        rows_t = W[:, : 8 * nmat].ravel()          # lanes that supply a row address
        rows_a = addr[:, : 8 * nmat].ravel()
        raw = st.shared_access(rows_t, rows_a, 16, False, None, 2)  # [w*8*nmat, 8] uint16
        mats = raw.reshape(W.shape[0], nmat, 8, 8)  # [w, matrix, row, col]
        if trans:
            mats = mats.transpose(0, 1, 3, 2)
        lane = np.arange(32)
        r, c = lane // 4, 2 * (lane % 4)
        lo = mats[:, :, r, c]                      # [w, matrix, 32]
        hi = mats[:, :, r, c + 1]
        regs = lo.astype(np.uint32) | (hi.astype(np.uint32) << np.uint32(16))
        order = np.argsort(W.ravel())              # back to th's order (th is sorted: identity)
        for i, w in enumerate(wrs):
            w(st, idx, regs[:, i, :].ravel()[order])
    return run


# ---------------------------------------------------------------------------------------------- mma.sync
def _halves(u32, kind):
    lo = (u32 & np.uint32(0xFFFF)).astype(np.uint16)
    hi = (u32 >> np.uint32(16)).astype(np.uint16)
    if kind == "bf16":
        return bf16_to_f32(lo).astype(np.float64), bf16_to_f32(hi).astype(np.float64)
    return lo.view(np.float16).astype(np.float64), hi.view(np.float16).astype(np.float64)


def mma_m16n8k16(a_regs, b_regs, c_regs, kind):
    """One warp-wide mma per row of the inputs. a_regs [w, 32, 4] u32, b_regs [w, 32, 2] u32,
    c_regs [w, 32, 4] f32 -> d [w, 32, 4] f32 (fragment layouts of the PTX ISA)."""
    w = a_regs.shape[0]
    lane = np.arange(32)
    g, tig = lane // 4, lane % 4
    A = np.zeros((w, 16, 16))
    B = np.zeros((w, 16, 8))
    C = np.zeros((w, 16, 8))
    for j in range(4):
        lo, hi = _halves(a_regs[:, :, j], kind)
        row = g + 8 * (j % 2)
        col = tig * 2 + 8 * (j // 2)
        A[:, row, col] = lo
        A[:, row, col + 1] = hi
    for j in range(2):
        lo, hi = _halves(b_regs[:, :, j], kind)
        k = tig * 2 + 8 * j
        B[:, k, g] = lo
        B[:, k + 1, g] = hi
    for j in range(4):
        C[:, g + 8 * (j // 2), tig * 2 + (j % 2)] = c_regs[:, :, j]
    with np.errstate(all="ignore"):
        D = np.einsum("wmk,wkn->wmn", A, B) + C
    out = np.zeros((w, 32, 4), np.float32)
    for j in range(4):
        out[:, :, j] = D[:, g + 8 * (j // 2), tig * 2 + (j % 2)].astype(np.float32)
    return out


@handler("mma")
def h_mma(ins, ctx, op):
    mods = ins.mods
    want = ("sync", "aligned", "m16n8k16", "row", "col", "f32")
    if not all(m in mods for m in want):
        raise ctx.fail(ins, "mma form not implemented (mma.sync.aligned.m16n8k16.row.col with f32 results is)")
    types = [m for m in mods if m in ("f32", "f16", "bf16")]
    if types not in (["f32", "f16", "f16", "f32"], ["f32", "bf16", "bf16", "f32"]):
        raise ctx.fail(ins, f"mma types {'.'.join(types)} not implemented")
    kind = types[1]
    d, a, b, c = ins.operands
    if not all(isinstance(x, Vec) for x in (d, a, b, c)) or (len(d.items), len(a.items), len(b.items),
                                                              len(c.items)) != (4, 4, 2, 4):
        raise ctx.fail(ins, "mma operand counts")
    ras = [ctx.reader(ins, x, "b32") for x in a.items]
    rbs = [ctx.reader(ins, x, "b32") for x in b.items]
    rcs = [ctx.reader(ins, x, "f32") for x in c.items]
    wds = [ctx.writer(ins, x, "f32") for x in d.items]
    op.warp_all = True

    def run(st, idx):
        th = _th(st, idx)
        W = warps_of(st, th)
        n = len(th)
        A = np.stack([_full(r(st, idx), n).astype(np.uint32) for r in ras], axis=1).reshape(W.shape[0], 32, 4)
        B = np.stack([_full(r(st, idx), n).astype(np.uint32) for r in rbs], axis=1).reshape(W.shape[0], 32, 2)
        C = np.stack([_full(r(st, idx), n).astype(np.float32) for r in rcs], axis=1).reshape(W.shape[0], 32, 4)
        D = mma_m16n8k16(A, B, C, kind).reshape(n, 4)
        for j, w in enumerate(wds):
            w(st, idx, D[:, j].copy())
    return run


# ---------------------------------------------------------------------------------------------- wmma
def wmma_layout():
    """The interpreter's WMMA fragment layout (m16n16k16). Element e = row * 16 + col of the fragment's
    16x16 matrix (A: m x k, B: k x n, C/D: m x n): lane e // 8 holds it; for A/B (8 .f16x2 registers) in
    register (e % 8) // 2, half e % 2 (registers 4..7 repeat 0..3); for C/D (8 .f32 registers) in register
    e % 8."""
    lane = np.arange(32)[:, None]
    slot = np.arange(8)[None, :]
    e = lane * 8 + slot
    return e // 16, e % 16  # [32, 8] row, col of each (lane, slot)


_ROW, _COL = wmma_layout()


@handler("wmma")
def h_wmma(ins, ctx, op):
    from .ops_memory import _space, access, address_reader
    mods = ins.mods
    if "m16n16k16" not in mods or "sync" not in mods or "aligned" not in mods:
        raise ctx.fail(ins, "wmma form not implemented (m16n16k16 .sync.aligned is)")
    op.warp_all = True
    kind = mods[0]
    if kind in ("load", "store"):
        frag = mods[1]  # a, b, c (load) / d (store)
        layout = "row" if "row" in mods else "col" if "col" in mods else None
        t = [m for m in mods if m in ("f16", "f32", "bf16")]
        if layout is None or len(t) != 1:
            raise ctx.fail(ins, "wmma load/store layout and type")
        t = t[0]
        space = _space(ins)
        if kind == "load":
            d, a = ins.operands[:2]
            regs = d
        else:
            a, regs = ins.operands[:2]
        stride = ins.operands[2] if len(ins.operands) > 2 else None
        rs = ctx.reader(ins, stride, "u32") if stride is not None else (lambda st, idx: np.uint32(16))
        ra = address_reader(ins, ctx, a, space)
        if t in ("f16", "bf16"):
            if frag not in ("a", "b") or len(regs.items) != 8:
                raise ctx.fail(ins, "wmma f16 fragments are a/b with 8 registers")
            ws = [ctx.writer(ins, x, "b32") for x in regs.items]
        else:
            if frag not in ("c", "d") or len(regs.items) != 8:
                raise ctx.fail(ins, "wmma f32 fragments are c/d with 8 registers")
            ws = [ctx.writer(ins, x, "f32") for x in regs.items] if kind == "load" else None
            rd = [ctx.reader(ins, x, "f32") for x in regs.items] if kind == "store" else None
        esize = 2 if t in ("f16", "bf16") else 4

        def elem_addrs(st, idx, th):
            W = warps_of(st, th)
            base = _full(ra(st, idx), len(th)).astype(np.int64).reshape(W.shape)[:, :1]  # lane 0's address
            ldm = _full(rs(st, idx), len(th)).astype(np.int64).reshape(W.shape)[:, :1]
            # matrix (row, col) of every (lane, slot); memory position by the layout
            r, c = _ROW[None], _COL[None]
            lin = r * ldm[:, :, None] + c if layout == "row" else c * ldm[:, :, None] + r
            return W, base[:, :, None] + lin * esize  # [w, 32, 8]

        if kind == "load":
            def runl(st, idx):
                th = _th(st, idx)
                W, ad = elem_addrs(st, idx, th)
                tt = np.repeat(W.ravel(), 8)
                raw = access(st, tt, space, ad.ravel().astype(np.uint64), esize, 1, False)[:, 0]
                raw = raw.reshape(W.shape[0] * 32, 8)
                if esize == 2:
                    packed = raw[:, 0::2].astype(np.uint32) | (raw[:, 1::2].astype(np.uint32) << np.uint32(16))
                    for j, w in enumerate(ws):
                        w(st, idx, packed[:, j % 4].copy())
                else:
                    for j, w in enumerate(ws):
                        w(st, idx, raw[:, j].copy().view(np.float32))
            return runl

        def runs(st, idx):
            th = _th(st, idx)
            W, ad = elem_addrs(st, idx, th)
            vals = np.stack([_full(r(st, idx), len(th)).astype(np.float32) for r in rd], axis=1)
            tt = np.repeat(W.ravel(), 8)
            access(st, tt, space, ad.ravel().astype(np.uint64), 4, 1, True, vals.view(np.uint32).reshape(-1, 1))
        return runs
    if kind == "mma":
        types = [m for m in mods if m in ("f32", "f16")]
        if types != ["f32", "f32"]:
            raise ctx.fail(ins, "wmma.mma with FP16 accumulators is not implemented (f32.f32 is)")
        d, a, b, c = ins.operands
        ras = [ctx.reader(ins, x, "b32") for x in a.items[:4]]
        rbs = [ctx.reader(ins, x, "b32") for x in b.items[:4]]
        rcs = [ctx.reader(ins, x, "f32") for x in c.items]
        wds = [ctx.writer(ins, x, "f32") for x in d.items]

        def runm(st, idx):
            th = _th(st, idx)
            W = warps_of(st, th)
            n, w = len(th), W.shape[0]

            def mat16(readers):
                regs = np.stack([_full(r(st, idx), n).astype(np.uint32) for r in readers], axis=1)  # [n, 4]
                halves = np.stack([regs & np.uint32(0xFFFF), regs >> np.uint32(16)], axis=2).reshape(n, 8)
                vals = halves.astype(np.uint16).view(np.float16).astype(np.float64).reshape(w, 32, 8)
                m = np.zeros((w, 16, 16))
                m[:, _ROW, _COL] = vals
                return m
            A, B = mat16(ras), mat16(rbs)
            C = np.zeros((w, 16, 16))
            C[:, _ROW, _COL] = np.stack([_full(r(st, idx), n) for r in rcs], axis=1).reshape(w, 32, 8)
            with np.errstate(all="ignore"):
                D = (np.einsum("wmk,wkn->wmn", A, B) + C).astype(np.float32)
            out = D[:, _ROW, _COL].reshape(n, 8)
            for j, wd in enumerate(wds):
                wd(st, idx, out[:, j].copy())
        return runm
    raise ctx.fail(ins, f"wmma.{kind} is not implemented")


_ = (VALUE, Imm, imm_int)
