"""BF16 precision of the native CPU engine (AVX512_BF16: BF16 weights and activations, FP32 accumulation).

Tolerances, from BF16's 8-bit significand (7 stored bits; unit roundoff u = 2**-8 under round to nearest even):
* op, against the same arithmetic in float64 on the BF16-rounded inputs: the products of two BF16 values are
  exact in FP32 (8 + 8 significand bits), so only the FP32 accumulation differs:
  |y - ref| <= (K + 2) * 2**-24 * (sum|a~||w~| + |bias|).
* op, against FP32 (unrounded inputs): each product a~ w~ = a w (1 + d), |d| <= 2u + u**2, so
  |y - y32| <= (2u + u**2) * sum|a||w| plus the FP32 terms; asserted as 2**-7 * 1.01 * sum|a||w| + 1e-5 * (|y32| + 1).
* whole pass, against the PyTorch FP32 reference: the FP16-storage tolerances scaled by 8 = 2**(11-8), the
  ratio of the FP16 and BF16 unit roundoffs: mse 1.6e-2 relative, cosines and mfsim 1.6e-2 absolute (measured
  on this random model, AMD Zen 4: 8.3e-4, 7.6e-3 and 1.9e-3).
Rows are bit-stable within the table (batch and thread count), as for FP32 and FP16.
Where the active table has no BF16 kernels (no AVX512_BF16, or LFDN_EDGE_CPU_ISA=avx2), bf16 is refused with a
RuntimeError: there is no fallback to another arithmetic.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfdn_edge.builder.native_payload import bf16_bits_to_f32, f32_to_bf16_bits

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_native_engine as ne  # noqa: E402  (the random model, inputs and reference of the engine tests)

INFO = _C.build_info()
HAS_BF16 = bool(INFO.get("cpu_has_avx512_bf16"))
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="CPU without AVX512_BF16 (or BF16 kernels not compiled in)")
U = 2.0 ** -8


def test_bf16_rounding_is_nearest_even():
    x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -8 + 2 ** -20, -2.5, np.inf, 0.0], np.float32)
    got = bf16_bits_to_f32(f32_to_bf16_bits(x))
    # spacing at 1 is 2^-7: 1 + 2^-8 is a tie -> even (1.0); 1 + 3*2^-8 a tie -> even (1 + 2^-6); above a tie: up
    want = np.array([1.0, 1.0, 1.0 + 2 ** -6, 1.0 + 2 ** -7, -2.5, np.inf, 0.0], np.float32)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="NaN"):
        f32_to_bf16_bits(np.array([np.nan], np.float32))
    r = np.random.default_rng(0).standard_normal(10000).astype(np.float32)
    assert np.max(np.abs(bf16_bits_to_f32(f32_to_bf16_bits(r)) / r - 1)) <= U


def _case(rows, K, N, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, K)).astype(np.float32)
    w = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    return x, w, b


def _as_bf16(a):
    return bf16_bits_to_f32(f32_to_bf16_bits(a)).astype(np.float64)


# shapes: odd K (k-pair padding), N not a multiple of 16, row groups of 1..12, several groups, more than one
# row block (96), K2 above the 128-pair k-block (accumulators stored and reloaded)
SHAPES = [(1, 37, 20), (7, 64, 16), (12, 192, 48), (13, 256, 33), (64, 513, 64), (100, 320, 24)]


@needs_bf16
@pytest.mark.parametrize("rows,K,N", SHAPES)
def test_bf16_linear_is_the_bf16_arithmetic_with_fp32_accumulation(rows, K, N):
    x, w, b = _case(rows, K, N, rows * 1000 + K)
    y = _C.fused_linear(x, f32_to_bf16_bits(w), b, prologue="none")
    xb, wb = _as_bf16(x), _as_bf16(w)
    ref = xb @ wb.T + b
    mag = np.abs(xb) @ np.abs(wb).T
    bound = (K + 2) * 2.0 ** -24 * (mag + np.abs(b))
    assert np.all(np.abs(y - ref) <= bound), float(np.max(np.abs(y - ref) / bound))
    # against FP32 (unrounded operands): the bound from the 8-bit significand
    y32 = x.astype(np.float64) @ w.T.astype(np.float64) + b
    bound32 = 2.0 ** -7 * 1.01 * (np.abs(x) @ np.abs(w).T) + 1e-5 * (np.abs(y32) + 1)
    assert np.all(np.abs(y - y32) <= bound32), float(np.max(np.abs(y - y32) / bound32))


@needs_bf16
@pytest.mark.parametrize("prologue", ["silu", "gn_silu"])
def test_bf16_linear_with_prologue_and_residual_within_the_bf16_bound(prologue):
    rows, K, N = 29, 200, 40
    x, w, b = _case(rows, K, N, 7)
    rng = np.random.default_rng(8)
    g = (1 + 0.1 * rng.standard_normal(K)).astype(np.float32)
    be = (0.1 * rng.standard_normal(K)).astype(np.float32)
    res = rng.standard_normal((rows, N)).astype(np.float32)
    x64 = x.astype(np.float64)
    if prologue == "silu":
        a = x64 / (1 + np.exp(-x64))
    else:
        m = x64.mean(1, keepdims=True)
        v = ((x64 - m) ** 2).mean(1, keepdims=True)
        h = (x64 - m) / np.sqrt(v + 1e-5) * g + be
        a = h / (1 + np.exp(-h))
    y = _C.fused_linear(x, f32_to_bf16_bits(w), b, prologue=prologue, gamma=g, beta=be, residual=res)
    y32 = a @ w.T.astype(np.float64) + b + res
    bound = 2.0 ** -7 * 1.01 * (np.abs(a) @ np.abs(w).T) + 1e-5 * (np.abs(y32) + 1)
    assert np.all(np.abs(y - y32) <= bound), float(np.max(np.abs(y - y32) / bound))


@needs_bf16
def test_bf16_linear_rows_do_not_depend_on_batch_or_threads():
    x, w, b = _case(150, 384, 80, 3)
    wb = f32_to_bf16_bits(w)
    full = _C.fused_linear(x, wb, b, prologue="gn_silu", gamma=np.ones(384, np.float32),
                           beta=np.zeros(384, np.float32), threads=2)
    for a, e in ((0, 1), (5, 17), (11, 107), (96, 150)):
        part = _C.fused_linear(x[a:e], wb, b, prologue="gn_silu", gamma=np.ones(384, np.float32),
                               beta=np.zeros(384, np.float32), threads=1)
        assert np.array_equal(part, full[a:e]), (a, e)


@pytest.fixture(scope="module")
def bench():
    return ne._bench_module()


@pytest.fixture(scope="module")
def ckpt(bench):
    from lfdn_edge.reference import ScoreConfig

    ck = bench.paper_checkpoint(seed=1, stage_dims=ne.LAYOUT, width=192, depth=3, emb_dim=96)
    ck.data["score"] = ScoreConfig(t=5, steps=3, eta=1.0, seed=123).to_dict()
    return ck


@pytest.fixture(scope="module")
def z0(bench):
    return bench.standardised_inputs(37, ne.LAYOUT, seed=9)


@needs_bf16
def test_bf16_engine_within_stated_tolerance_of_the_fp32_reference(ckpt, z0):
    eng = ne._engine(ckpt, "bf16")
    assert eng.precision == "bf16"
    out = eng.score(z0)
    ref, _ = ne._reference(ckpt, z0)
    np.testing.assert_allclose(out["mse"], ref["mse"], rtol=1.6e-2)
    np.testing.assert_allclose(out["stage_cos"], ref["stage_cos"], rtol=0, atol=1.6e-2)
    np.testing.assert_allclose(out["mfsim"], ref["mfsim"], rtol=0, atol=1.6e-2)
    # and it is not the FP32 or FP16 arithmetic under another name
    f16 = ne._engine(ckpt, "fp16").score(z0)
    assert not np.array_equal(out["stage_cos"], f16["stage_cos"])


@needs_bf16
def test_bf16_engine_rows_do_not_depend_on_batch_or_threads(ckpt, z0):
    eng1, eng2 = ne._engine(ckpt, "bf16", threads=1), ne._engine(ckpt, "bf16", threads=2)
    full = eng2.score(z0)
    for a, b in ((0, 1), (3, 10), (10, 37), (1, 14)):
        part = eng1.score(z0[a:b])
        for k in ("mse", "mfsim", "stage_cos"):
            assert np.array_equal(part[k], full[k][a:b]), (k, a, b)


def _run_with_isa(isa: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "LFDN_EDGE_CPU_ISA": isa},
                          capture_output=True, text=True, timeout=300)


REFUSAL = r"""
import numpy as np
from lfdn_edge import _C
from lfdn_edge.builder.native_payload import f32_to_bf16_bits
info = _C.build_info()
print("active", info["cpu_kernels_active"], info["cpu_bf16_active"])
w = f32_to_bf16_bits(np.ones((16, 32), np.float32))
try:
    _C.fused_linear(np.ones((2, 32), np.float32), w)
except RuntimeError as e:
    print("REFUSED", e)
else:
    print("RAN")
"""


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_bf16_is_refused_on_a_table_without_bf16_kernels(isa):
    if isa not in INFO["cpu_kernels_usable"]:
        pytest.skip(f"{isa} table not usable here")
    out = _run_with_isa(isa, REFUSAL)
    assert out.returncode == 0, out.stderr
    assert f"active {isa} False" in out.stdout
    assert "REFUSED" in out.stdout and "AVX512_BF16" in out.stdout and "no BF16 fallback" in out.stdout, out.stdout


def test_bf16_engine_is_refused_when_the_cpu_lacks_it_or_the_table_is_forced(ckpt, z0):
    """No AVX512_BF16 (auto) or a forced table without BF16: CpuEngine refuses; switching the table after the
    engine was built makes score() refuse (never another arithmetic)."""
    if not HAS_BF16:
        with pytest.raises(RuntimeError, match="AVX512_BF16"):
            ne._engine(ckpt, "bf16")
        return
    eng = ne._engine(ckpt, "bf16")
    for isa in [t for t in INFO["cpu_kernels_usable"] if t != "avx512"]:
        _C.set_cpu_isa(isa)
        try:
            with pytest.raises(RuntimeError, match="AVX512_BF16"):
                ne._engine(ckpt, "bf16")
            with pytest.raises(RuntimeError, match=f"active table is '{isa}'"):
                eng.score(z0)
        finally:
            _C.set_cpu_isa("auto")
    assert np.isfinite(eng.score(z0)["mse"]).all()


def test_bf16_artifact_round_trip_and_backend(ckpt, z0, tmp_path):
    from lfdn_edge.artifact.file import read_engine, write_engine
    from lfdn_edge.artifact.header import common_header
    from lfdn_edge.builder.native_payload import build_native_artifact

    batch = (1, 16, 64)
    extras, payload = build_native_artifact(ckpt, "bf16", batch, False)
    header = {**common_header(ckpt, "native", "bf16", batch, False), **extras}
    dtypes = {t["name"]: t["dtype"] for t in header["native"]["tensors"]}
    assert dtypes["inp_w"] == "uint16" and dtypes["fc1_w.0"] == "uint16" and dtypes["inp_b"] == "float32"
    path = write_engine(tmp_path / "m.native.bf16.engine", header, payload)
    from lfdn_edge.runtime.backends.native_backend import NativeBackend

    if not HAS_BF16:
        with pytest.raises(RuntimeError, match="AVX512_BF16"):
            NativeBackend(read_engine(path), "cpu")
        return
    out = NativeBackend(read_engine(path), "cpu").run(z0)
    direct = ne._engine(ckpt, "bf16").score(z0)
    assert np.array_equal(np.asarray(out.mfsim), direct["mfsim"])


def test_bf16_is_a_native_only_precision(ckpt):
    from lfdn_edge.artifact.header import common_header
    from lfdn_edge.cli.build import build_parser

    with pytest.raises(ValueError, match="native CPU engine"):
        common_header(ckpt, "onnx", "bf16", (1, 1, 1), False)
    assert build_parser().parse_args(["c.pt", "--backend", "native", "--bf16"]).precision == "bf16"
    assert build_parser().parse_args(["c.pt", "--precision", "bf16"]).precision == "bf16"
