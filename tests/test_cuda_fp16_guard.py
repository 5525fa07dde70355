"""The FP16 range guard of the CUDA fused linear (csrc/include/lfdn/fp16_guard.h).

The CUDA GEMM rounds its activations to FP16, where the CPU keeps FP32: a finite activation >= 65520 would
become inf (and inf * a zero-padded weight NaN). Every row is multiplied by fp16_row_scale(max |a|), a power
of two, before the rounding and its FP32 result divided by it after. The rule itself and an exact emulation
of what the kernel computes run on the CPU (always); the kernel and the whole CUDA pass on out-of-range
inputs run only with a GPU (skipped otherwise, with the reason).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

FP16_MAX = 65504.0


def test_row_scale_is_one_in_range_and_a_power_of_two_that_fits_above():
    for v in (0.0, 1e-30, 1.0, 1000.0, 32767.0, 32768.0):
        assert _C.fp16_row_scale(v) == 1.0, v
    for v in (math.inf, math.nan):  # propagate as the FP32 CPU path does
        assert _C.fp16_row_scale(v) == 1.0
    for v in (32768.5, 40000.0, 65504.0, 65520.0, 1e6, 1.2345e20, 3.4e38):
        s = _C.fp16_row_scale(v)
        mant, _ = math.frexp(s)
        assert mant == 0.5 and s < 1.0, (v, s)  # an exact power of two below 1
        assert 2.0**14 <= v * s < 2.0**15, (v, s)
        assert np.isfinite(np.float16(np.float32(v) * np.float32(s)))


def _kernel_emulation(a: np.ndarray, w16: np.ndarray, guard: bool) -> np.ndarray:
    """What the kernel computes for A (rows, K) FP32 and FP16 weights (N, K): FP16 products, FP32 sums."""
    out = np.empty((a.shape[0], w16.shape[0]), np.float64)
    for r, row in enumerate(a):
        s = _C.fp16_row_scale(float(np.max(np.abs(row)))) if guard else 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            ah = (row * np.float32(s)).astype(np.float16).astype(np.float64)
            out[r] = (w16.astype(np.float64) @ ah) / s
    return out


def test_guard_keeps_huge_rows_finite_and_accurate_and_leaves_normal_rows_alone():
    rng = np.random.default_rng(0)
    k, n = 256, 64
    w16 = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float16)
    w16[:, -3:] = 0  # like the zero padding of the packed weights: inf * 0 = NaN without the guard
    a = rng.standard_normal((4, k)).astype(np.float32)
    a[1] *= 1e5  # far-OOD input row after SiLU: |a| up to ~4e5
    a[2] *= 3e30
    a[3, 7] = 7e4  # one element just above the FP16 range
    exact = w16.astype(np.float64) @ a.astype(np.float64).T
    unguarded = _kernel_emulation(a, w16, guard=False)
    assert not np.isfinite(unguarded[1:]).all(), "the test rows must overflow FP16 without the guard"
    got = _kernel_emulation(a, w16, guard=True)
    assert np.isfinite(got).all()
    scale = np.abs(w16.astype(np.float64)) @ np.abs(a.astype(np.float64)).T  # sum |w||a| per output
    assert np.max(np.abs(got - exact.T) / scale.T) < 2e-3  # FP16 rounding of each term: ~2^-11
    np.testing.assert_array_equal(got[0], unguarded[0])  # in-range rows: exactly the unguarded result


# -------------------------------------------------------------------------------------------------- GPU
def _cuda_ok():
    from lfdn_edge.native_core import cuda_usable

    return cuda_usable()


cuda = pytest.mark.skipif(not _cuda_ok()[0], reason=f"CUDA kernels not runnable here: {_cuda_ok()[1]}")


@cuda
@pytest.mark.parametrize("rows", [3, 40])  # the 16-row and the 64-row kernel
@pytest.mark.parametrize("prologue", ["none", "silu", "gn_silu"])
def test_cuda_fused_linear_out_of_fp16_range_matches_fp64(rows, prologue):
    from lfdn_edge.native_core import cuda_fused_linear, cuda_pack_linear

    rng = np.random.default_rng(11)
    k, n = 300, 160
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x[1] *= 2e5
    x[2] *= 1e30
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float16)
    b = rng.standard_normal(n).astype(np.float32)
    g = (1 + 0.2 * rng.standard_normal(k)).astype(np.float32)
    g[:5] = 3e5  # GroupNorm outputs beyond the FP16 range too
    be = (0.2 * rng.standard_normal(k)).astype(np.float32)
    dev = torch.device("cuda")
    t = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
    kw = {"gamma": t(g), "beta": t(be)} if prologue == "gn_silu" else {}
    got = cuda_fused_linear(t(x), cuda_pack_linear(w), n, t(b), prologue=prologue, **kw).cpu().numpy()
    xt = torch.from_numpy(x).double()
    if prologue == "gn_silu":
        xt = F.silu(F.group_norm(xt, 1, torch.from_numpy(g).double(), torch.from_numpy(be).double(), 1e-5))
    elif prologue == "silu":
        xt = F.silu(xt)
    wt = torch.from_numpy(w.astype(np.float32)).double()
    ref = (xt @ wt.T + torch.from_numpy(b).double()).numpy()
    assert np.isfinite(got).all(), f"non-finite outputs in rows {np.where(~np.isfinite(got).all(1))[0]}"
    scale = (xt.abs() @ wt.abs().T).numpy() + 1.0
    assert np.max(np.abs(got - ref) / scale) < 5e-3
    if prologue != "gn_silu":  # (with gamma = 3e5 every GroupNorm row is out of range)
        # rows in range are computed exactly as without the guard: same bits as in a batch of calm rows
        calm = x.copy()
        calm[1:3] = 0.5
        ref_calm = cuda_fused_linear(t(calm), cuda_pack_linear(w), n, t(b), prologue=prologue).cpu().numpy()
        keep = [0, *range(3, rows)]
        np.testing.assert_array_equal(got[keep], ref_calm[keep])


@cuda
def test_cuda_fused_linear_propagates_nan_like_the_cpu():
    from lfdn_edge.native_core import cuda_fused_linear, cuda_pack_linear

    x = np.ones((2, 64), np.float32)
    x[1, 3] = np.nan
    w = np.full((32, 64), 0.01, np.float16)
    got = cuda_fused_linear(torch.from_numpy(x).cuda(), cuda_pack_linear(w), 32, prologue="silu").cpu().numpy()
    assert np.isfinite(got[0]).all() and np.isnan(got[1]).all()
