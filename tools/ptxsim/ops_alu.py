"""Arithmetic, logic, comparison, selection, conversion and math instructions."""

from __future__ import annotations

import numpy as np

from .opsutil import count, full, registry
from .ptxtypes import BITS, SINT, UINT, VALUE, approx, bf16_to_f32, f32_to_bf16_rn, f32_to_f16_bits, fma_f32, fma_f64, ftz32

H, handler = registry()


def _types(ins):
    return [m for m in ins.mods if m in BITS]


def _type(ins, ctx):
    ts = _types(ins)
    if not ts:
        raise ctx.fail(ins, "no type")
    return ts[-1]


ROUND = ("rn", "rz", "rm", "rp")
KNOWN_FLOAT_MODS = {"rn", "rz", "rm", "rp", "ftz", "sat", "approx", "full", "noftz", "oob", "relu"}


def _check_mods(ins, ctx, allowed):
    for m in ins.mods:
        if m not in allowed and m not in BITS:
            raise ctx.fail(ins, f"modifier .{m} is not implemented for {ins.opcode}")


_n, _full = count, full


# ---------------------------------------------------------------------------------------------- f16/bf16 lanes
def _f16_lanes(v, t):
    """f16/bf16 (16-bit bits) or f16x2/bf16x2 (32-bit) -> list of float64 arrays, one per half (low first)."""
    v = np.asarray(v)
    if t in ("f16", "bf16"):
        halves = [v.astype(np.uint16)]
    else:
        u = v.astype(np.uint32)
        halves = [(u & np.uint32(0xFFFF)).astype(np.uint16), (u >> np.uint32(16)).astype(np.uint16)]
    if t.startswith("bf16"):
        return [bf16_to_f32(h).astype(np.float64) for h in halves]
    return [h.view(np.float16).astype(np.float64) for h in halves]


def _f64_to_f32_odd(x):
    r = x.astype(np.float32)
    back = r.astype(np.float64)
    inexact = (back != x) & np.isfinite(x)
    towards0 = np.where(np.abs(back) > np.abs(x), np.nextafter(r, np.float32(0)), r).astype(np.float32)
    u = towards0.view(np.uint32) | np.uint32(1)
    return np.where(inexact, u.view(np.float32), r)


def _pack_f16(lanes, t, sat=False, relu=False):
    out = []
    for x in lanes:
        if sat:
            x = np.where(np.isnan(x), 0.0, np.clip(x, 0.0, 1.0))
        if relu:
            x = np.where(np.isnan(x), x, np.maximum(x, 0.0))
        if t.startswith("bf16"):
            out.append(f32_to_bf16_rn(_f64_to_f32_odd(np.asarray(x, np.float64))))
        else:
            out.append(np.asarray(x, np.float64).astype(np.float16).view(np.uint16))
    if len(out) == 1:
        return out[0]
    return out[0].astype(np.uint32) | (out[1].astype(np.uint32) << np.uint32(16))


# ---------------------------------------------------------------------------------------------- mov
@handler("mov")
def h_mov(ins, ctx, op):
    t = _type(ins, ctx)
    d, a = ins.operands
    from .parser import Vec
    if isinstance(d, Vec) or isinstance(a, Vec):  # pack / unpack (mov.b64 {lo, hi}, %rd)
        bits = BITS[t]
        if isinstance(a, Vec):
            n = len(a.items)
            e = bits // n
            rds = [ctx.reader(ins, x, f"b{e}") for x in a.items]
            wr = ctx.writer(ins, d, t)

            def run(st, idx):
                acc = np.zeros(_n(st, idx), UINT[bits])
                for i, r in enumerate(rds):
                    acc |= _full(r(st, idx), _n(st, idx)).astype(UINT[bits]) << UINT[bits](i * e)
                wr(st, idx, acc.view(VALUE[t]) if t in VALUE else acc)
            return run
        n = len(d.items)
        e = bits // n
        rd = ctx.reader(ins, a, f"b{bits}")
        wrs = [ctx.writer(ins, x, f"b{e}") for x in d.items]

        def run2(st, idx):
            v = _full(rd(st, idx), _n(st, idx)).astype(UINT[bits])
            for i, w in enumerate(wrs):
                w(st, idx, ((v >> UINT[bits](i * e)) & UINT[bits]((1 << e) - 1)).astype(UINT[e]))
        return run2
    rd = ctx.reader(ins, a, t)
    wr = ctx.writer(ins, d, t)

    def run3(st, idx):
        wr(st, idx, _full(rd(st, idx), _n(st, idx)))
    return run3


# ---------------------------------------------------------------------------------------------- integer and float binary
def _int_binop(name, a, b, t):
    bits = BITS[t]
    with np.errstate(all="ignore"):
        if name == "add":
            return a + b
        if name == "sub":
            return a - b
        if name == "and":
            return a & b
        if name == "or":
            return a | b
        if name == "xor":
            return a ^ b
        if name == "min":
            return np.minimum(a, b)
        if name == "max":
            return np.maximum(a, b)
        if name in ("div", "rem"):
            a64 = np.asarray(a)
            b64 = np.asarray(b)
            if t[0] == "s":
                aa, bb = a64.astype(np.int64), b64.astype(np.int64)
                if bits == 64:
                    aa, bb = a64.astype(object), b64.astype(object)
                safe = np.where(bb == 0, 1, bb)
                q = np.abs(aa) // np.abs(safe)
                q = np.where((aa < 0) ^ (safe < 0), -q, q)
                r = aa - q * safe
                res = q if name == "div" else r
                res = np.where(bb == 0, -1 if name == "div" else aa, res)
                out = np.array([int(x) & ((1 << bits) - 1) for x in np.ravel(res)], dtype=np.uint64) \
                    if bits == 64 else np.asarray(res).astype(np.int64)
                return out.astype(UINT[bits]).view(SINT[bits]).reshape(np.shape(res)) if bits == 64 else \
                    (np.asarray(out) & ((1 << bits) - 1)).astype(UINT[bits]).view(SINT[bits])
            safe = np.where(b64 == 0, 1, b64)
            res = a64 // safe if name == "div" else a64 % safe
            return np.where(b64 == 0, np.asarray(-1).astype(a64.dtype) if name == "div" else a64, res)
    raise ValueError(name)


@handler("add", "sub", "and", "or", "xor", "min", "max", "div", "rem")
def h_binop(ins, ctx, op):
    t = _type(ins, ctx)
    name = ins.opcode
    d, a, b = ins.operands[:3]
    mods = set(ins.mods)
    if t == "pred":
        ra, rb = ctx.reader(ins, a, "pred"), ctx.reader(ins, b, "pred")
        wr = ctx.writer(ins, d, "pred")
        f = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}[name]

        def runp(st, idx):
            wr(st, idx, _full(f(ra(st, idx), rb(st, idx)), _n(st, idx)))
        return runp
    if t in ("f16", "f16x2", "bf16", "bf16x2"):
        _check_mods(ins, ctx, {"rn", "ftz", "sat", "NaN", "xorsign", "abs"})
        ra, rb = ctx.reader(ins, a, "b16" if BITS[t] == 16 else "b32"), ctx.reader(ins, b, "b16" if BITS[t] == 16 else "b32")
        wr = ctx.writer(ins, d, "b16" if BITS[t] == 16 else "b32")
        nan_prop = "NaN" in mods

        def runh(st, idx):
            la, lb = _f16_lanes(ra(st, idx), t), _f16_lanes(rb(st, idx), t)
            out = []
            for x, y in zip(la, lb):
                if name == "add":
                    out.append(x + y)
                elif name == "sub":
                    out.append(x - y)
                elif name in ("min", "max"):
                    f = np.fmin if name == "min" else np.fmax
                    r = f(x, y)
                    if nan_prop:
                        r = np.where(np.isnan(x) | np.isnan(y), np.nan, r)
                    out.append(r)
                else:
                    raise ctx.fail(ins, "not implemented")
            wr(st, idx, _full(_pack_f16(out, t, sat="sat" in mods), _n(st, idx)))
        return runh
    if t in ("f32", "f64"):
        _check_mods(ins, ctx, {"rn", "rz", "rm", "rp", "ftz", "sat", "approx", "full", "NaN", "xorsign", "abs"})
        ra, rb = ctx.reader(ins, a, t), ctx.reader(ins, b, t)
        wr = ctx.writer(ins, d, t)
        ftz = "ftz" in mods and t == "f32"
        sat = "sat" in mods
        rnd = next((m for m in ins.mods if m in ROUND), "rn")
        appr = ("approx" in mods or "full" in mods) and name == "div"
        nan_prop = "NaN" in mods

        def runf(st, idx):
            x, y = np.asarray(ra(st, idx)), np.asarray(rb(st, idx))
            if ftz:
                x, y = ftz32(x), ftz32(y)
            with np.errstate(all="ignore"):
                if name in ("add", "sub", "div") and rnd != "rn":
                    r = _directed(name, x, y, rnd, t)
                elif name == "add":
                    r = x + y
                elif name == "sub":
                    r = x - y
                elif name == "div":
                    r = x / y
                    if appr and t == "f32":  # div.approx / div.full: 2 ulp
                        r = approx("div.f32", np.asarray(r, np.float32), x, st.dev.approx)
                elif name in ("min", "max"):
                    f = np.fmin if name == "min" else np.fmax
                    r = f(x, y)
                    if nan_prop:
                        r = np.where(np.isnan(x) | np.isnan(y), np.nan, r)
                else:
                    raise ctx.fail(ins, "not implemented")
            r = np.asarray(r, VALUE[t])
            if ftz:
                r = ftz32(r)
            if sat:
                r = np.where(np.isnan(r), 0, np.clip(r, 0, 1)).astype(VALUE[t])
            wr(st, idx, _full(r, _n(st, idx), VALUE[t]))
        return runf
    _check_mods(ins, ctx, {"cc", "sat", "relu"})
    cc = "cc" in mods
    ra, rb = ctx.reader(ins, a, t), ctx.reader(ins, b, t)
    wr = ctx.writer(ins, d, t)
    sat = "sat" in mods

    def runi(st, idx):
        x, y = np.asarray(ra(st, idx)), np.asarray(rb(st, idx))
        if cc:
            ux = _full(x, _n(st, idx)).astype(np.uint64)
            uy = _full(y, _n(st, idx)).astype(np.uint64)
            ux, uy = ux & np.uint64(0xFFFFFFFF), uy & np.uint64(0xFFFFFFFF)
            if name == "add":
                s = ux + uy
                st.carry[idx] = (s >> np.uint64(32)).astype(np.uint32)
            else:
                s = ux - uy
                st.carry[idx] = (ux < uy).astype(np.uint32)
            r = (s & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(VALUE[t])
        elif sat and name in ("add", "sub") and t == "s32":
            s = (x.astype(np.int64) + y.astype(np.int64)) if name == "add" else (x.astype(np.int64) - y.astype(np.int64))
            r = np.clip(s, -2**31, 2**31 - 1).astype(np.int32)
        else:
            r = _int_binop(name, x, y, t)
        wr(st, idx, _full(np.asarray(r).astype(VALUE[t]), _n(st, idx)))
    return runi


def _directed(name, x, y, rnd, t):
    """add/sub/div of FP32 with .rz/.rm/.rp: the FP64 result (exact for add/sub of FP32, and correct enough
    to decide the direction for div) rounded in the requested direction."""
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    v = x64 + y64 if name == "add" else x64 - y64 if name == "sub" else x64 / y64
    if t == "f64":
        return v
    r = v.astype(np.float32)
    back = r.astype(np.float64)
    if rnd == "rz":
        r = np.where(np.abs(back) > np.abs(v), np.nextafter(r, np.float32(0)), r)
    elif rnd == "rm":
        r = np.where(back > v, np.nextafter(r, np.float32(-np.inf)), r)
    elif rnd == "rp":
        r = np.where(back < v, np.nextafter(r, np.float32(np.inf)), r)
    return r.astype(np.float32)


@handler("addc", "subc")
def h_addc(ins, ctx, op):
    t = _type(ins, ctx)
    d, a, b = ins.operands
    ra, rb = ctx.reader(ins, a, t), ctx.reader(ins, b, t)
    wr = ctx.writer(ins, d, t)
    cc = "cc" in ins.mods
    if BITS[t] != 32:
        raise ctx.fail(ins, "only 32-bit carry arithmetic is implemented")

    def run(st, idx):
        n = _n(st, idx)
        ux = _full(ra(st, idx), n).astype(np.uint32).astype(np.uint64)
        uy = _full(rb(st, idx), n).astype(np.uint32).astype(np.uint64)
        c = st.carry[idx].astype(np.uint64)
        if ins.opcode == "addc":
            s = ux + uy + c
            newc = (s >> np.uint64(32)).astype(np.uint32)
        else:
            s = ux - uy - c
            newc = (ux < uy + c).astype(np.uint32)
        if cc:
            st.carry[idx] = newc
        wr(st, idx, (s & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(VALUE[t]))
    return run


# ---------------------------------------------------------------------------------------------- mul / mad / fma
def _mulhi_u64(a, b):
    a = a.astype(np.uint64)
    b = b.astype(np.uint64)
    m32 = np.uint64(0xFFFFFFFF)
    a0, a1 = a & m32, a >> np.uint64(32)
    b0, b1 = b & m32, b >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & m32) + (p10 & m32)
    return p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))


def _int_mul(x, y, t, mode):
    bits = BITS[t]
    with np.errstate(all="ignore"):
        if mode == "wide":
            wt = (SINT if t[0] == "s" else UINT)[bits * 2]
            return np.asarray(x).astype(wt) * np.asarray(y).astype(wt)
        if mode == "lo":
            return np.asarray(x) * np.asarray(y)
        # hi
        if bits <= 32:
            wt = np.int64 if t[0] == "s" else np.uint64
            p = np.asarray(x).astype(wt) * np.asarray(y).astype(wt)
            return (p >> bits).astype(VALUE[t])
        ux = np.asarray(x).astype(VALUE[t]).view(np.uint64) if np.asarray(x).ndim else np.array([x], VALUE[t]).view(np.uint64)
        uy = np.asarray(y).astype(VALUE[t]).view(np.uint64) if np.asarray(y).ndim else np.array([y], VALUE[t]).view(np.uint64)
        hi = _mulhi_u64(ux, uy)
        if t[0] == "s":  # signed correction: hi(a*b) = hi_u(a*b) - (a<0 ? b : 0) - (b<0 ? a : 0)
            sx, sy = ux.view(np.int64) < 0, uy.view(np.int64) < 0
            hi = hi - np.where(sx, uy, np.uint64(0)) - np.where(sy, ux, np.uint64(0))
        return hi.view(VALUE[t])


@handler("mul")
def h_mul(ins, ctx, op):
    t = _type(ins, ctx)
    d, a, b = ins.operands
    mods = set(ins.mods)
    if t in ("f32", "f64"):
        _check_mods(ins, ctx, {"rn", "rz", "rm", "rp", "ftz", "sat"})
        ra, rb = ctx.reader(ins, a, t), ctx.reader(ins, b, t)
        wr = ctx.writer(ins, d, t)
        rnd = next((m for m in ins.mods if m in ROUND), "rn")
        ftz = "ftz" in mods and t == "f32"
        sat = "sat" in mods

        def runf(st, idx):
            x, y = np.asarray(ra(st, idx)), np.asarray(rb(st, idx))
            if ftz:
                x, y = ftz32(x), ftz32(y)
            with np.errstate(all="ignore"):
                if rnd == "rn" or t == "f64":
                    r = np.asarray(x * y, VALUE[t])
                else:
                    r = fma_directed(x, y, np.zeros_like(np.asarray(x, np.float32)), rnd)
            if ftz:
                r = ftz32(r)
            if sat:
                r = np.where(np.isnan(r), 0, np.clip(r, 0, 1)).astype(VALUE[t])
            wr(st, idx, _full(r, _n(st, idx), VALUE[t]))
        return runf
    if t in ("f16", "f16x2", "bf16", "bf16x2"):
        w = "b16" if BITS[t] == 16 else "b32"
        ra, rb, wr = ctx.reader(ins, a, w), ctx.reader(ins, b, w), ctx.writer(ins, d, w)

        def runh(st, idx):
            out = [x * y for x, y in zip(_f16_lanes(ra(st, idx), t), _f16_lanes(rb(st, idx), t))]
            wr(st, idx, _full(_pack_f16(out, t, sat="sat" in mods), _n(st, idx)))
        return runh
    mode = "wide" if "wide" in mods else "hi" if "hi" in mods else "lo"
    _check_mods(ins, ctx, {"wide", "hi", "lo"})
    ra, rb = ctx.reader(ins, a, t), ctx.reader(ins, b, t)
    bits = BITS[t]
    dt = (("s" if t[0] == "s" else "u") + str(bits * 2)) if mode == "wide" else t
    wr = ctx.writer(ins, d, dt)

    def runi(st, idx):
        wr(st, idx, _full(_int_mul(ra(st, idx), rb(st, idx), t, mode), _n(st, idx)).astype(VALUE[dt]))
    return runi


@handler("mul24", "mad24")
def h_mul24(ins, ctx, op):
    raise ctx.fail(ins, "mul24/mad24 are not implemented")


def fma_directed(x, y, z, rnd):
    """FP32 a*b+c rounded toward rz/rm/rp."""
    with np.errstate(all="ignore"):
        p = np.asarray(x, np.float64) * np.asarray(y, np.float64)
        c = np.asarray(z, np.float64)
        s = p + c
        bb = s - p
        e = (p - (s - bb)) + (c - bb)
        r = fma_f32(np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(z, np.float32))
        d = r.astype(np.float64) - s  # exact (r and s are within a factor 2)
        above, below = d > e, d < e
        if rnd == "rz":
            r = np.where((r > 0) & above | (r < 0) & below, np.nextafter(r, np.float32(0)), r)
        elif rnd == "rm":
            r = np.where(above, np.nextafter(r, np.float32(-np.inf)), r)
        elif rnd == "rp":
            r = np.where(below, np.nextafter(r, np.float32(np.inf)), r)
    return np.asarray(r, np.float32)


@handler("mad", "fma", "madc")
def h_fma(ins, ctx, op):
    t = _type(ins, ctx)
    d, a, b, c = ins.operands
    mods = set(ins.mods)
    if t in ("f32", "f64"):
        _check_mods(ins, ctx, {"rn", "rz", "rm", "rp", "ftz", "sat"})
        if ins.opcode == "mad" and not (mods & set(ROUND)):
            raise ctx.fail(ins, "mad.f32 without rounding (non-fused) is not implemented")
        ra, rb, rc = ctx.reader(ins, a, t), ctx.reader(ins, b, t), ctx.reader(ins, c, t)
        wr = ctx.writer(ins, d, t)
        rnd = next((m for m in ins.mods if m in ROUND), "rn")
        ftz = "ftz" in mods and t == "f32"
        sat = "sat" in mods

        def runf(st, idx):
            n = _n(st, idx)
            x, y, z = (_full(r(st, idx), n, VALUE[t]) for r in (ra, rb, rc))
            if ftz:
                x, y, z = ftz32(x), ftz32(y), ftz32(z)
            if t == "f64":
                if rnd != "rn":
                    raise ctx.fail(ins, "directed rounding of fma.f64 is not implemented")
                r = fma_f64(x, y, z)
            elif rnd == "rn":
                r = fma_f32(x, y, z)
            else:
                r = fma_directed(x, y, z, rnd)
            if ftz:
                r = ftz32(r)
            if sat:
                r = np.where(np.isnan(r), 0, np.clip(r, 0, 1)).astype(VALUE[t])
            wr(st, idx, r)
        return runf
    if t in ("f16", "f16x2", "bf16", "bf16x2"):
        w = "b16" if BITS[t] == 16 else "b32"
        ra, rb, rc, wr = ctx.reader(ins, a, w), ctx.reader(ins, b, w), ctx.reader(ins, c, w), ctx.writer(ins, d, w)

        def runh(st, idx):
            la, lb, lc = (_f16_lanes(r(st, idx), t) for r in (ra, rb, rc))
            out = [fma_f64(x, y, z) for x, y, z in zip(la, lb, lc)]
            wr(st, idx, _full(_pack_f16(out, t, sat="sat" in mods, relu="relu" in mods), _n(st, idx)))
        return runh
    mode = "wide" if "wide" in mods else "hi" if "hi" in mods else "lo"
    _check_mods(ins, ctx, {"wide", "hi", "lo", "cc"})
    bits = BITS[t]
    dt = (("s" if t[0] == "s" else "u") + str(bits * 2)) if mode == "wide" else t
    ra, rb, rc = ctx.reader(ins, a, t), ctx.reader(ins, b, t), ctx.reader(ins, c, dt)
    wr = ctx.writer(ins, d, dt)
    cc = "cc" in mods
    carry_in = ins.opcode == "madc"

    def runi(st, idx):
        n = _n(st, idx)
        p = _full(_int_mul(ra(st, idx), rb(st, idx), t, mode), n).astype(VALUE[dt])
        z = _full(rc(st, idx), n).astype(VALUE[dt])
        if cc or carry_in:
            if BITS[dt] != 32:
                raise ctx.fail(ins, "carry forms are implemented for 32-bit results only")
            s = p.view(np.uint32).astype(np.uint64) + z.view(np.uint32).astype(np.uint64)
            if carry_in:
                s = s + st.carry[idx].astype(np.uint64)
            if cc:
                st.carry[idx] = (s >> np.uint64(32)).astype(np.uint32)
            r = (s & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(VALUE[dt])
        else:
            with np.errstate(all="ignore"):
                r = p + z
        wr(st, idx, r)
    return runi


# ---------------------------------------------------------------------------------------------- unary
@handler("abs", "neg", "not", "cnot", "clz", "popc", "brev", "sqrt", "rcp", "rsqrt", "ex2", "lg2", "sin", "cos",
         "tanh")
def h_unary(ins, ctx, op):
    t = _type(ins, ctx)
    d, a = ins.operands
    name = ins.opcode
    mods = set(ins.mods)
    if name in ("clz", "popc"):
        ra, wr = ctx.reader(ins, a, t), ctx.writer(ins, d, "u32")
        bits = BITS[t]

        def runc(st, idx):
            v = _full(ra(st, idx), _n(st, idx)).astype(UINT[bits]).astype(np.uint64)
            if name == "popc":
                cnt = np.zeros(v.shape, np.uint32)
                for i in range(bits):
                    cnt += ((v >> np.uint64(i)) & np.uint64(1)).astype(np.uint32)
            else:
                cnt = np.full(v.shape, bits, np.uint32)
                for i in range(bits):
                    cnt = np.where(((v >> np.uint64(i)) & np.uint64(1)) == 1, np.uint32(bits - 1 - i), cnt)
            wr(st, idx, cnt)
        return runc
    if t in ("f16", "f16x2", "bf16", "bf16x2") and name in ("abs", "neg"):
        w = "b16" if BITS[t] == 16 else "b32"
        ra, wr = ctx.reader(ins, a, w), ctx.writer(ins, d, w)
        m = {16: 0x8000, 32: 0x80008000}[BITS[t]]

        def runh(st, idx):
            v = _full(ra(st, idx), _n(st, idx))
            wr(st, idx, (v & ~UINT[BITS[t]](m)) if name == "abs" else (v ^ UINT[BITS[t]](m)))
        return runh
    ra, wr = ctx.reader(ins, a, t), ctx.writer(ins, d, t)
    ftz = "ftz" in mods and t == "f32"
    appr = "approx" in mods
    rnd = next((m for m in ins.mods if m in ROUND), None)
    if name in ("sqrt", "rcp") and not appr and rnd is None:
        raise ctx.fail(ins, f"{name} without .approx or a rounding mode")
    if name in ("sqrt", "rcp") and rnd not in (None, "rn"):
        raise ctx.fail(ins, f"{name}.{rnd} is not implemented")
    if name in ("rsqrt", "ex2", "lg2", "sin", "cos", "tanh") and not appr:
        raise ctx.fail(ins, f"{name} without .approx")

    def run(st, idx):
        x = _full(ra(st, idx), _n(st, idx))
        if ftz:
            x = ftz32(x)
        with np.errstate(all="ignore"):
            if name == "abs":
                r = np.abs(x) if t[0] != "u" else x
            elif name == "neg":
                r = -x
            elif name == "not":
                r = ~x if t != "pred" else ~x.astype(bool)
            elif name == "cnot":
                r = (x == 0).astype(x.dtype)
            elif name == "brev":
                bits = BITS[t]
                u = x.astype(np.uint64)
                r = np.zeros_like(u)
                for i in range(bits):
                    r |= ((u >> np.uint64(i)) & np.uint64(1)) << np.uint64(bits - 1 - i)
                r = r.astype(UINT[bits])
            else:
                f64 = x.astype(np.float64)
                ex = {"sqrt": np.sqrt, "rcp": lambda v: 1.0 / v, "rsqrt": lambda v: 1.0 / np.sqrt(v),
                      "ex2": np.exp2, "lg2": np.log2, "sin": np.sin, "cos": np.cos, "tanh": np.tanh}[name](f64)
                if t == "f32" and name in ("sqrt", "rcp") and not appr:
                    r = (np.sqrt(x) if name == "sqrt" else np.float32(1) / x).astype(np.float32)
                elif t == "f64" and not appr:
                    r = np.sqrt(x) if name == "sqrt" else 1.0 / x
                else:
                    key = f"{name}.{t}"
                    if key not in ("sqrt.f32", "rcp.f32", "rsqrt.f32", "ex2.f32", "lg2.f32", "sin.f32", "cos.f32",
                                   "tanh.f32", "rcp.f64", "rsqrt.f64"):
                        raise ctx.fail(ins, f"{name}.approx.{t} is not implemented")
                    r = approx(key, ex.astype(VALUE[t]), x, st.dev.approx)
        r = np.asarray(r)
        if ftz:
            r = ftz32(r)
        wr(st, idx, r.astype(VALUE[t]) if t != "pred" else r)
    return run


@handler("copysign")
def h_copysign(ins, ctx, op):
    t = _type(ins, ctx)
    d, a, b = ins.operands
    ra, rb, wr = ctx.reader(ins, a, t), ctx.reader(ins, b, t), ctx.writer(ins, d, t)
    return lambda st, idx: wr(st, idx, _full(np.copysign(rb(st, idx), ra(st, idx)), _n(st, idx)).astype(VALUE[t]))


@handler("testp")
def h_testp(ins, ctx, op):
    t = _type(ins, ctx)
    d, a = ins.operands
    ra, wr = ctx.reader(ins, a, t), ctx.writer(ins, d, "pred")
    kind = [m for m in ins.mods if m not in BITS][0]
    f = {"finite": np.isfinite, "infinite": np.isinf, "number": lambda v: ~np.isnan(v), "notanumber": np.isnan,
         "normal": lambda v: np.isfinite(v) & (np.abs(v) >= np.finfo(v.dtype).tiny),
         "subnormal": lambda v: (v != 0) & (np.abs(v) < np.finfo(v.dtype).tiny)}[kind]
    return lambda st, idx: wr(st, idx, _full(f(np.asarray(ra(st, idx))), _n(st, idx)))


# ---------------------------------------------------------------------------------------------- shifts and bits
@handler("shl", "shr")
def h_shift(ins, ctx, op):
    t = _type(ins, ctx)
    d, a, b = ins.operands
    ra, rb, wr = ctx.reader(ins, a, t), ctx.reader(ins, b, "u32"), ctx.writer(ins, d, t)
    bits = BITS[t]

    def run(st, idx):
        n = _n(st, idx)
        x = _full(ra(st, idx), n)
        s = _full(rb(st, idx), n).astype(np.uint64)
        big = s >= bits
        sc = np.where(big, 0, s).astype(x.dtype if x.dtype.kind == "u" else UINT[bits])
        with np.errstate(all="ignore"):
            if ins.opcode == "shl":
                r = np.where(big, 0, x << sc.astype(x.dtype))
            elif t[0] == "s":
                r = np.where(big, np.where(x < 0, -1, 0), x >> sc.astype(x.dtype))
            else:
                r = np.where(big, 0, x >> sc.astype(x.dtype))
        wr(st, idx, r.astype(VALUE[t]))
    return run


@handler("bfe")
def h_bfe(ins, ctx, op):
    t = _type(ins, ctx)
    d, a, b, c = ins.operands
    ra, rb, rc, wr = ctx.reader(ins, a, t), ctx.reader(ins, b, "u32"), ctx.reader(ins, c, "u32"), ctx.writer(ins, d, t)
    bits = BITS[t]

    def run(st, idx):
        n = _n(st, idx)
        x = _full(ra(st, idx), n).astype(UINT[bits]).astype(object)
        pos = _full(rb(st, idx), n).astype(np.int64) & 0xFF
        ln = _full(rc(st, idx), n).astype(np.int64) & 0xFF
        out = []
        for xi, p, l_ in zip(x, pos, ln):
            p, l_ = int(p), int(l_)
            if l_ == 0:
                out.append(0)
                continue
            v = (int(xi) >> min(p, bits - 1)) if p < bits else (int(xi) >> (bits - 1) if t[0] == "s" else 0)
            v &= (1 << l_) - 1 if l_ < bits else (1 << bits) - 1
            if t[0] == "s":
                sbit = min(p + l_ - 1, bits - 1)
                sign = (int(xi) >> sbit) & 1
                if sign and l_ < bits:
                    v |= ((1 << bits) - 1) ^ ((1 << l_) - 1)
            out.append(v & ((1 << bits) - 1))
        wr(st, idx, np.array(out, dtype=np.uint64).astype(UINT[bits]).view(VALUE[t]))
    return run


@handler("bfi")
def h_bfi(ins, ctx, op):
    t = _type(ins, ctx)
    d, f, b, c, e = ins.operands
    rf, rb, rc, re_ = (ctx.reader(ins, x, tt) for x, tt in ((f, t), (b, t), (c, "u32"), (e, "u32")))
    wr = ctx.writer(ins, d, t)
    bits = BITS[t]

    def run(st, idx):
        n = _n(st, idx)
        fv = _full(rf(st, idx), n).astype(UINT[bits]).astype(np.uint64)
        bv = _full(rb(st, idx), n).astype(UINT[bits]).astype(np.uint64)
        pos = _full(rc(st, idx), n).astype(np.uint64) & np.uint64(0xFF)
        ln = _full(re_(st, idx), n).astype(np.uint64) & np.uint64(0xFF)
        ln = np.minimum(ln, np.maximum(np.uint64(bits) - np.minimum(pos, np.uint64(bits)), np.uint64(0)))
        mask = ((np.uint64(1) << ln) - np.uint64(1)) << np.minimum(pos, np.uint64(63))
        mask = np.where(pos >= bits, np.uint64(0), mask)
        r = (bv & ~mask) | ((fv << np.minimum(pos, np.uint64(63))) & mask)
        wr(st, idx, r.astype(UINT[bits]).view(VALUE[t]))
    return run


@handler("prmt")
def h_prmt(ins, ctx, op):
    if any(m in ins.mods for m in ("f4e", "b4e", "rc8", "ecl", "ecr", "rc16")):
        raise ctx.fail(ins, "prmt modes are not implemented (only the default mode)")
    d, a, b, c = ins.operands
    ra, rb, rc, wr = ctx.reader(ins, a, "b32"), ctx.reader(ins, b, "b32"), ctx.reader(ins, c, "b32"), ctx.writer(ins, d, "b32")

    def run(st, idx):
        n = _n(st, idx)
        x = _full(ra(st, idx), n).astype(np.uint64) | (_full(rb(st, idx), n).astype(np.uint64) << np.uint64(32))
        sel = _full(rc(st, idx), n).astype(np.uint64)
        r = np.zeros(n, np.uint64)
        for i in range(4):
            s = (sel >> np.uint64(4 * i)) & np.uint64(0xF)
            byte = (x >> ((s & np.uint64(7)) * np.uint64(8))) & np.uint64(0xFF)
            byte = np.where((s & np.uint64(8)) != 0, np.where((byte & np.uint64(0x80)) != 0, np.uint64(0xFF), np.uint64(0)), byte)
            r |= byte << np.uint64(8 * i)
        wr(st, idx, r.astype(np.uint32))
    return run


# ---------------------------------------------------------------------------------------------- compare / select
_CMP = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: (a != b) & ~np.isnan(a) & ~np.isnan(b),
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "equ": lambda a, b: (a == b) | np.isnan(a) | np.isnan(b), "neu": lambda a, b: (a != b),
    "ltu": lambda a, b: ~(a >= b), "leu": lambda a, b: ~(a > b), "gtu": lambda a, b: ~(a <= b),
    "geu": lambda a, b: ~(a < b), "num": lambda a, b: ~np.isnan(a) & ~np.isnan(b),
    "nan": lambda a, b: np.isnan(a) | np.isnan(b),
    "lo": lambda a, b: a < b, "ls": lambda a, b: a <= b, "hi": lambda a, b: a > b, "hs": lambda a, b: a >= b,
}


def _cmp(kind, a, b, t):
    if t not in ("f32", "f64", "f16", "bf16") and kind == "ne":
        return a != b
    return _CMP[kind](a, b)


@handler("setp", "set")
def h_setp(ins, ctx, op):
    from .parser import Pair
    t = _type(ins, ctx)
    kinds = [m for m in ins.mods if m in _CMP]
    if not kinds:
        raise ctx.fail(ins, "no comparison")
    kind = kinds[0]
    comb = next((m for m in ins.mods if m in ("and", "or", "xor")), None)
    d = ins.operands[0]
    a, b = ins.operands[1], ins.operands[2]
    if ins.opcode == "set":
        raise ctx.fail(ins, "set is not implemented (setp is)")
    rc = ctx.reader(ins, ins.operands[3], "pred") if comb else None
    if t in ("f16", "bf16"):
        ra, rb = ctx.reader(ins, a, "b16"), ctx.reader(ins, b, "b16")
    else:
        ra, rb = ctx.reader(ins, a, t), ctx.reader(ins, b, t)
    wp = ctx.writer(ins, d.first if isinstance(d, Pair) else d, "pred")
    wq = ctx.writer(ins, d.second, "pred") if isinstance(d, Pair) else None
    ftz = "ftz" in ins.mods

    def run(st, idx):
        n = _n(st, idx)
        x, y = _full(ra(st, idx), n), _full(rb(st, idx), n)
        if t in ("f16", "bf16"):
            x, y = _f16_lanes(x, t)[0], _f16_lanes(y, t)[0]
        if ftz:
            x, y = ftz32(x), ftz32(y)
        with np.errstate(all="ignore"):
            r = _cmp(kind, x, y, t)
        q = ~r
        if comb:
            c = _full(rc(st, idx), n).astype(bool)
            f = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}[comb]
            r, q = f(r, c), f(q, c)
        wp(st, idx, r)
        if wq is not None:
            wq(st, idx, q)
    return run


@handler("selp")
def h_selp(ins, ctx, op):
    t = _type(ins, ctx)
    d, a, b, c = ins.operands
    ra, rb, rc, wr = ctx.reader(ins, a, t), ctx.reader(ins, b, t), ctx.reader(ins, c, "pred"), ctx.writer(ins, d, t)

    def run(st, idx):
        n = _n(st, idx)
        wr(st, idx, np.where(_full(rc(st, idx), n), _full(ra(st, idx), n), _full(rb(st, idx), n)).astype(VALUE[t]))
    return run


@handler("slct")
def h_slct(ins, ctx, op):
    ts = _types(ins)
    t, ct = ts[0], ts[1]
    d, a, b, c = ins.operands
    ra, rb, rc, wr = ctx.reader(ins, a, t), ctx.reader(ins, b, t), ctx.reader(ins, c, ct), ctx.writer(ins, d, t)

    def run(st, idx):
        n = _n(st, idx)
        wr(st, idx, np.where(_full(rc(st, idx), n) >= 0, _full(ra(st, idx), n), _full(rb(st, idx), n)).astype(VALUE[t]))
    return run


# ---------------------------------------------------------------------------------------------- cvt
_INT_RANGE = {t: (np.iinfo(VALUE[t]).min, np.iinfo(VALUE[t]).max) for t in
              ("u8", "s8", "u16", "s16", "u32", "s32", "u64", "s64")}


@handler("cvt")
def h_cvt(ins, ctx, op):
    ts = _types(ins)
    if len(ts) != 2:
        raise ctx.fail(ins, "cvt needs two types")
    dt, at = ts
    mods = set(ins.mods) - set(ts)
    _check_mods(ins, ctx, {"rn", "rz", "rm", "rp", "rni", "rzi", "rmi", "rpi", "ftz", "sat", "relu"})
    irnd = next((m for m in ins.mods if m in ("rni", "rzi", "rmi", "rpi")), None)
    frnd = next((m for m in ins.mods if m in ROUND), None)
    sat = "sat" in mods
    ftz = "ftz" in mods
    d = ins.operands[0]
    if dt in ("f16x2", "bf16x2"):  # cvt.rn.f16x2.f32 d, hi, lo
        rh, rl = ctx.reader(ins, ins.operands[1], "f32"), ctx.reader(ins, ins.operands[2], "f32")
        wr = ctx.writer(ins, d, "b32")

        def runx(st, idx):
            n = _n(st, idx)
            hi, lo = _full(rh(st, idx), n, np.float32), _full(rl(st, idx), n, np.float32)
            wr(st, idx, _pack_f16([lo.astype(np.float64), hi.astype(np.float64)], dt, sat=sat, relu="relu" in mods))
        return runx
    a = ins.operands[1]
    src_t = "b16" if at in ("f16", "bf16") else at
    ra = ctx.reader(ins, a, src_t)
    dst_t = "b16" if dt in ("f16", "bf16") else dt
    wr = ctx.writer(ins, d, dst_t)
    af, df = at in ("f16", "bf16", "f32", "f64"), dt in ("f16", "bf16", "f32", "f64")
    if at == "f64" and dt == "f16" and frnd not in (None, "rn"):
        raise ctx.fail(ins, "f64 -> f16 with directed rounding is not implemented")

    def run(st, idx):
        n = _n(st, idx)
        x = _full(ra(st, idx), n)
        if at == "f16":
            x = x.astype(np.uint16).view(np.float16).astype(np.float32)
        elif at == "bf16":
            x = bf16_to_f32(x.astype(np.uint16))
        if ftz and at == "f32":
            x = ftz32(x)
        with np.errstate(all="ignore"):
            if af and df:
                if irnd:  # round to integral value in floating point
                    f = {"rni": np.rint, "rzi": np.trunc, "rmi": np.floor, "rpi": np.ceil}[irnd]
                    x = f(x)
                if dt == "f16":
                    r = np.asarray(x, np.float64).astype(np.float16).view(np.uint16) if at == "f64" else \
                        f32_to_f16_bits(np.asarray(x, np.float32), frnd or "rn")
                    if sat:
                        r = np.asarray(np.clip(np.where(np.isnan(r.view(np.float16)), 0, r.view(np.float16)), 0, 1),
                                       np.float16).view(np.uint16)
                elif dt == "bf16":
                    if (frnd or "rn") != "rn":
                        raise ctx.fail(ins, "bf16 conversion with directed rounding is not implemented")
                    src = np.asarray(x, np.float32) if at != "f64" else _f64_to_f32_odd(np.asarray(x, np.float64))
                    r = f32_to_bf16_rn(src)
                elif dt == "f32":
                    if at == "f64" and frnd not in (None, "rn"):
                        r = _directed("add", np.asarray(x, np.float64), np.zeros(n), frnd, "f32")
                    else:
                        r = np.asarray(x).astype(np.float32)
                    if sat:
                        r = np.where(np.isnan(r), 0, np.clip(r, 0, 1)).astype(np.float32)
                    if ftz:
                        r = ftz32(r)
                else:
                    r = np.asarray(x).astype(np.float64)
                    if sat:
                        r = np.where(np.isnan(r), 0, np.clip(r, 0, 1))
            elif af and not df:  # float -> integer: round, clamp to the range, NaN -> 0
                f = {"rni": np.rint, "rzi": np.trunc, "rmi": np.floor, "rpi": np.ceil, None: np.trunc}[irnd]
                v = f(np.asarray(x, np.float64))
                lo, hi = _INT_RANGE[dt]
                v = np.where(np.isnan(v), 0, v)
                if BITS[dt] == 64:
                    big = v >= float(hi)
                    small = v <= float(lo)
                    safe = np.where(big | small, 0, v)
                    r = safe.astype(VALUE[dt])
                    r = np.where(big, VALUE[dt](hi), np.where(small, VALUE[dt](lo), r))
                else:
                    r = np.clip(v, lo, hi).astype(VALUE[dt])
            elif not af and df:  # integer -> float
                if frnd not in (None, "rn"):
                    raise ctx.fail(ins, f"integer to float conversion with .{frnd} is not implemented")
                if dt == "f16":
                    r = np.asarray(x).astype(np.float64).astype(np.float16).view(np.uint16)
                elif dt == "bf16":
                    r = f32_to_bf16_rn(_f64_to_f32_odd(np.asarray(x).astype(np.float64)))
                else:
                    r = np.asarray(x).astype(VALUE[dt])
            else:  # integer -> integer: truncate or extend (the source type decides), .sat clamps
                if sat:
                    lo, hi = _INT_RANGE[dt]
                    v = np.asarray(x).astype(object) if BITS[at] == 64 else np.asarray(x).astype(np.int64)
                    r = np.array([min(max(int(z), lo), hi) for z in np.ravel(v)]).astype(VALUE[dt]) \
                        if BITS[at] == 64 else np.clip(v, lo, hi).astype(VALUE[dt])
                else:
                    xs = np.asarray(x)
                    if BITS[dt] > BITS[at]:
                        r = xs.astype(VALUE[dt]) if at[0] == "s" or dt[0] == "s" and at[0] == "s" else \
                            xs.astype(UINT[BITS[at]]).astype(VALUE[dt])
                    else:
                        r = xs.astype(UINT[BITS[at]]).astype(UINT[BITS[dt]]).view(VALUE[dt])
        wr(st, idx, np.asarray(r))
    return run


@handler("cvta")
def h_cvta(ins, ctx, op):
    from .memory import LOCAL_WINDOW, SHARED_WINDOW
    t = _type(ins, ctx)
    to = "to" in ins.mods
    space = next((m for m in ins.mods if m in ("global", "shared", "local", "const", "param")), None)
    if space is None:
        raise ctx.fail(ins, "cvta without a state space")
    d, a = ins.operands
    ra, wr = ctx.reader(ins, a, t), ctx.writer(ins, d, t)
    base = {"shared": SHARED_WINDOW, "local": LOCAL_WINDOW}.get(space, 0)
    if space in ("const", "param"):
        raise ctx.fail(ins, f"cvta of .{space} is not implemented")
    bits = BITS[t]

    def run(st, idx):
        v = _full(ra(st, idx), _n(st, idx)).astype(np.uint64)
        with np.errstate(all="ignore"):
            r = v - np.uint64(base) if to else v + np.uint64(base)
        wr(st, idx, r.astype(UINT[bits]).view(VALUE[t]))
    return run
