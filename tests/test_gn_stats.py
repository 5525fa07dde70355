"""GroupNorm statistics for any finite input (csrc/include/lfdn/gn_stats.h).

The statistics are FP32. Unscaled, the centred sum of squares overflows once |x - mean| exceeds ~1.8e19: the
variance is inf, rstd 0, and the row silently becomes SiLU(beta). The shared rule scales rows above 2^32 by a
power of two first; the CUDA prologue, legacy tile and reference kernels use it for every row, the CPU kernels
when their SIMD statistics overflowed. Checked here on the CPU against float64 at rows of 1e-30 .. 1e30 (and
near FLT_MAX): the rule itself (the same header the CUDA kernels compile), and the CPU op with every kernel
table this machine has.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

EPS = 1e-5
SCALES = [10.0**e for e in range(-30, 31, 5)] + [3e38]


def _rows(k=1440, seed=0):
    """(label, row) pairs: centred rows at every scale, rows with a large common offset, mixed-sign extremes."""
    rng = np.random.default_rng(seed)
    out = []
    for s in SCALES:
        base = rng.standard_normal(k)
        out.append((f"N(0,1)*{s:g}", (base / np.max(np.abs(base)) * s).astype(np.float32)))
        out.append((f"{s:g}*(1+N(0,1)/8)", (s * (1.0 + base / np.max(np.abs(base)) / 8)).astype(np.float32)))
    ext = np.full(k, 3.0e38, np.float32)
    ext[::2] = -3.0e38  # |x - mean| ~ 3e38 per element, a sum of squares ~1e80
    out.append(("+-3e38", ext))
    return out


def _normalised_f64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.mean()
    return (x - m) / np.sqrt(((x - m) ** 2).mean() + EPS)


def test_rule_is_unscaled_up_to_2_pow_32_and_a_power_of_two_above():
    for v in (1e-30, 1.0, 65504.0, 2.0**32):
        assert _C.gn_row_stats(np.full(4, v, np.float32), EPS)[0] == 1.0, v
    for v in (2.0**32 * 1.01, 1.8e19, 1e30, 3.4e38):
        inv = _C.gn_row_stats(np.array([v, -v / 2], np.float32), EPS)[0]
        mant, _ = math.frexp(inv)
        assert mant == 0.5 and 0.5 <= np.float32(v) * inv < 1.0, (v, inv)
    for bad in (np.inf, np.nan):  # non-finite rows keep scale 1 and propagate as before
        st = _C.gn_row_stats(np.array([1.0, bad, 1e30], np.float32), EPS)
        assert st[0] == 1.0 and not np.isfinite(st[1])


@pytest.mark.parametrize("label,row", _rows(), ids=lambda v: v if isinstance(v, str) else "")
def test_shared_rule_matches_float64_at_every_scale(label, row):
    inv, mean, rstd = _C.gn_row_stats(row, EPS)
    got = (row.astype(np.float32) * np.float32(inv) - np.float32(mean)) * np.float32(rstd)
    assert np.isfinite(got).all(), label
    want = _normalised_f64(row)
    # normalised values are O(1) (or ~0 for tiny rows, where eps dominates): absolute error of FP32 sums over
    # 1440 terms; rows with an offset 8x their spread lose log2(8) bits more in x - mean
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4, err_msg=label)


def _gn_silu_linear_f64(x, w, b, g, beta):
    a = np.stack([_normalised_f64(r) for r in x]) * g + beta
    a = a / (1.0 + np.exp(-a))
    return a @ w.T.astype(np.float64) + b, np.abs(a) @ np.abs(w.T.astype(np.float64)) + np.abs(b)


@pytest.mark.parametrize("isa", [i for i in ("scalar", "avx2", "avx512", "neon")
                                 if i in _C.build_info().get("cpu_kernels_usable", [])])
def test_cpu_fused_linear_gn_silu_matches_float64_from_1e_minus_30_to_1e30(isa):
    """Rows at each scale through op 2 with the GroupNorm prologue: on main before the shared rule, every row
    above ~1.8e19 came out as SiLU(beta) @ W + b."""
    rng = np.random.default_rng(1)
    labels, rows = zip(*_rows(k=96, seed=2))
    x = np.stack(rows).astype(np.float32)
    k, n = x.shape[1], 24
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(k)).astype(np.float32)
    beta = (0.5 * rng.standard_normal(k)).astype(np.float32)
    want, scale = _gn_silu_linear_f64(x, w, bias, gamma, beta)
    prev = _C.cpu_isa()
    try:
        _C.set_cpu_isa(isa)
        got = _C.fused_linear(x, w, bias, prologue="gn_silu", gamma=gamma, beta=beta, gn_eps=EPS)
    finally:
        _C.set_cpu_isa("auto" if prev not in ("scalar", "avx2", "avx512", "neon") else prev)
    assert np.isfinite(got).all()
    err = np.abs(got - want) / scale
    worst = int(np.argmax(err.max(axis=1)))
    assert err.max() < 1e-4, f"{isa}: row {labels[worst]} off by {err.max():.2e} of sum|a||w|"
