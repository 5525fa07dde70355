"""PTX scalar types: widths, numpy views of register bits, FP16/BF16 conversion, exact FMA and approximate
instructions modelled with their documented error bounds."""

from __future__ import annotations

import numpy as np

# type -> (bits, numpy dtype of its values); f16/bf16 values are handled as float32 after conversion
BITS = {"pred": 1, "b8": 8, "u8": 8, "s8": 8, "b16": 16, "u16": 16, "s16": 16, "f16": 16, "bf16": 16,
        "b32": 32, "u32": 32, "s32": 32, "f32": 32, "f16x2": 32, "bf16x2": 32,
        "b64": 64, "u64": 64, "s64": 64, "f64": 64, "b128": 128}
UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}
SINT = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}
VALUE = {"u8": np.uint8, "s8": np.int8, "b8": np.uint8, "u16": np.uint16, "s16": np.int16, "b16": np.uint16,
         "u32": np.uint32, "s32": np.int32, "b32": np.uint32, "u64": np.uint64, "s64": np.int64, "b64": np.uint64,
         "f32": np.float32, "f64": np.float64, "f16": np.float16, "f16x2": np.uint32, "bf16x2": np.uint32,
         "bf16": np.uint16}


def bits_of(t: str) -> int:
    return BITS[t]


def is_signed(t: str) -> bool:
    return t[0] == "s"


def is_float(t: str) -> bool:
    return t in ("f16", "bf16", "f32", "f64")


def raw_to(raw: np.ndarray, t: str) -> np.ndarray:
    """Register bits (unsigned array of the register's width) -> values of type t (PTX's size rules: a wider
    register is truncated, a narrower one zero- or sign-extended)."""
    if t == "pred":
        return raw.astype(bool)
    bits = BITS[t]
    have = raw.dtype.itemsize * 8 if raw.dtype != np.bool_ else 1
    if raw.dtype == np.bool_:
        raw = raw.astype(np.uint8)
        have = 8
    if have != bits:
        if have > bits:
            raw = raw.astype(UINT[bits])
        else:
            src = raw.view(SINT[have]) if is_signed(t) else raw
            raw = src.astype(SINT[bits] if is_signed(t) else UINT[bits]).view(UINT[bits])
    if t == "bf16":
        return raw
    return raw.view(VALUE[t])


def to_raw(val: np.ndarray, t: str, reg_bits: int) -> np.ndarray:
    """Values of type t -> bits for a register of reg_bits (sign/zero extension for wider registers)."""
    if reg_bits == 1:
        return np.asarray(val).astype(bool)
    val = np.asarray(val)
    if t == "pred":
        return val.astype(UINT[reg_bits])
    bits = BITS[t]
    if t in ("f32", "f64", "f16") and val.dtype != VALUE[t]:
        val = val.astype(VALUE[t])
    elif t not in ("f32", "f64", "f16") and val.dtype != VALUE[t]:
        val = val.astype(VALUE[t])
    raw = val.view(UINT[bits]) if bits in UINT else val
    if reg_bits == bits:
        return raw
    if reg_bits > bits:
        if is_signed(t):
            return raw.view(SINT[bits]).astype(SINT[reg_bits]).view(UINT[reg_bits])
        return raw.astype(UINT[reg_bits])
    return raw.astype(UINT[reg_bits])


# ------------------------------------------------------------------------------------------------ BF16
def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_rn(x: np.ndarray) -> np.ndarray:
    """Round to nearest even; NaN stays a (quiet) NaN."""
    u = np.asarray(x, np.float32).view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = np.isnan(np.asarray(x, np.float32))
    return np.where(nan, (u >> np.uint32(16)) | np.uint32(0x40), rounded).astype(np.uint16)


def f32_to_f16_bits(x: np.ndarray, rnd: str = "rn") -> np.ndarray:
    x = np.asarray(x, np.float32)
    if rnd == "rn":
        return x.astype(np.float16).view(np.uint16)
    # directed rounding: round to nearest, then step toward the requested direction when it went the other way
    h = x.astype(np.float16)
    back = h.astype(np.float32)
    if rnd == "rz":
        bad = np.abs(back) > np.abs(x)
        h = np.where(bad & np.isfinite(x), np.nextafter(h, np.float16(0)), h)
        h = np.where(np.isinf(h) & np.isfinite(x), np.copysign(np.float16(65504), x), h)
    elif rnd == "rm":
        h = np.where((back > x) & np.isfinite(x), np.nextafter(h, np.float16(-np.inf)), h)
    elif rnd == "rp":
        h = np.where((back < x) & np.isfinite(x), np.nextafter(h, np.float16(np.inf)), h)
    else:
        raise ValueError(rnd)
    return np.asarray(h, np.float16).view(np.uint16)


def ftz32(x: np.ndarray) -> np.ndarray:
    """Flush FP32 subnormals to sign-preserving zero."""
    x = np.asarray(x, np.float32)
    sub = (x != 0) & (np.abs(x) < np.float32(1.17549435e-38))
    if sub.any():
        x = np.where(sub, np.copysign(np.float32(0), x), x).astype(np.float32)
    return x


# ------------------------------------------------------------------------------------------------ FMA
def _two_sum(a: np.ndarray, b: np.ndarray):
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Correctly rounded a*b+c in FP32: the product is exact in FP64 (48 bits), the sum s = fl64(p + c) with
    its exact error e (TwoSum); rounding s to FP32 is wrong only when s lies exactly on an FP32 rounding
    boundary and e is not zero, then s is moved one FP64 step toward e first."""
    with np.errstate(all="ignore"):
        p = a.astype(np.float64) * b.astype(np.float64)
        cc = c.astype(np.float64)
        s, e = _two_sum(p, cc)
        finite = np.isfinite(s) & np.isfinite(e)
        r = s.astype(np.float32)
        # boundary: the FP64 value is halfway between two FP32 numbers (its low 29 mantissa bits are 1000...0)
        low = s.view(np.uint64) & np.uint64((1 << 29) - 1)
        tie = finite & (e != 0) & (low == np.uint64(1 << 28))
        if tie.any():
            s2 = np.where(tie, np.nextafter(s, s + np.sign(e) * np.inf), s)
            r = s2.astype(np.float32)
        inexact_inf = ~np.isfinite(p) | ~np.isfinite(cc)
        if inexact_inf.any():  # infinities/NaN: plain IEEE rules of the FP64 computation
            r = np.where(inexact_inf, (p + cc).astype(np.float32), r)
    return r.astype(np.float32)


def _split(a: np.ndarray):
    c = a * 134217729.0  # 2^27 + 1 (Veltkamp)
    hi = c - (c - a)
    return hi, a - hi


def fma_f64(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a*b+c in FP64 from error-free transformations (Dekker's product, TwoSum): the exact value is
    s + t with |t| <= ulp(s)/2 apart from the last partial sum; correctly rounded except when the final
    sum sits exactly on a rounding boundary (probability ~2^-50 per operation for random data)."""
    with np.errstate(all="ignore"):
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        c = c.astype(np.float64)
        p = a * b
        ah, al = _split(a)
        bh, bl = _split(b)
        pe = ((ah * bh - p) + ah * bl + al * bh) + al * bl
        s, t = _two_sum(p, c)
        r = s + (t + pe)
        plain = ~np.isfinite(p) | ~np.isfinite(c) | ~np.isfinite(r) | (np.abs(a) > 1e150) | (np.abs(b) > 1e150)
        if plain.any():
            r = np.where(plain, p + c, r)
    return r


# ------------------------------------------------------------------------------------------------ approximate
# Maximum errors of the approximate instructions as the PTX ISA states them (relative unless noted). In
# "bound" mode the interpreter returns the exact result moved by the full bound in a direction that depends
# on the input bits (deterministic), so that kernels are tested against the worst the hardware may do; in
# "exact" mode the correctly rounded result.
APPROX_REL = {
    "ex2.f32": 2.0 ** -22,     # ex2.approx.f32: 2 ulp over the full range (ftz or not)
    "lg2.f32": 2.0 ** -22,     # lg2.approx.f32: absolute 2^-22 near 1, relative elsewhere (both modelled)
    "rcp.f32": 2.0 ** -23,     # rcp.approx.f32: 1 ulp
    "div.f32": 2.0 ** -22,     # div.approx.f32 / div.full.f32: 2 ulp
    "rsqrt.f32": 2.0 ** -22,   # rsqrt.approx.f32: 2^-22.9 relative
    "sqrt.f32": 2.0 ** -23,    # sqrt.approx.f32: 2^-23 relative
    "sin.f32": 2.0 ** -20.5,   # sin/cos.approx.f32: absolute 2^-20.5 in [-pi, pi]
    "cos.f32": 2.0 ** -20.5,
    "tanh.f32": 2.0 ** -11,    # tanh.approx.f32: 2^-10.987 relative
    "rcp.f64": 2.0 ** -22,     # rcp.approx.ftz.f64: a ~23-bit seed for Newton steps (modelled at 2^-22)
    "rsqrt.f64": 2.0 ** -22,
}


def approx(kind: str, exact: np.ndarray, x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "exact":
        return exact
    rel = APPROX_REL[kind]
    dtype = exact.dtype
    xb = np.asarray(x).view(np.uint32 if x.dtype.itemsize == 4 else np.uint64).astype(np.uint64)
    sign = np.where(((xb * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(63)) == 1, 1.0, -1.0)
    with np.errstate(all="ignore"):
        e64 = exact.astype(np.float64)
        moved = e64 * (1.0 + sign * rel)
        if kind in ("lg2.f32", "sin.f32", "cos.f32"):
            moved = e64 + sign * rel * np.maximum(1.0, np.abs(e64))
        out = np.where(np.isfinite(e64) & (e64 != 0), moved, e64).astype(dtype)
    return out
