"""INT8 precision of the native CPU engine: INT8 weights (per-output-channel symmetric scales), activations quantized
per row at run time, exact INT32 accumulation (AVX512-VNNI vpdpbusd, AMX-INT8 tiles, NEON sdot; the scalar table as
the reference).

Tolerances, derived from the scheme (docs/NATIVE.md "INT8"):
* the weights: w~ = q * scale exactly (float64); quantize_weight_int8 is checked on its own.
* one row's activations a are rounded to steps of s = max|a| / 127, so an output moves by at most
  0.5 * s * sum_k |w~_k| against the same weights with exact activations (asserted with 1 % on top for the FP32
  prologue and epilogue, + 1e-5 absolute and relative: the rule tactic selection verifies with).
* the INT32 sums are exact, so every INT8 kernel of a table (VNNI, AMX one- and two-panel tiles, packed or row-major
  activations) gives bit-identical outputs, and a table with and one without an activation offset (x86's unsigned
  codes, q + 128) agree bit for bit where their prologues agree (prologue none).
* the whole pass against the PyTorch FP32 reference on the random engine-test model: mse 1e-2 relative, stage
  cosines 5e-2 and mfsim 2.5e-2 absolute (about 2.5x the measured: see the test's comment). What matters for a
  user, the detection AUROC on real data, is measured by tools/precision_auroc.py (docs/NATIVE.md "INT8").
Where the active table has no INT8 kernels (avx512 without VNNI, avx2 without AVX-VNNI, neon without the dot
product), int8 is refused with a RuntimeError: no fallback to another arithmetic.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfdn_edge.builder.quantize import WEIGHT_SCHEME, dequantize_weight_int8, quantize_weight_int8

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_native_engine as ne  # noqa: E402  (the random model, inputs and reference of the engine tests)

INFO = _C.build_info()
INT8_TABLES = []
for _isa in INFO["cpu_kernels_usable"]:
    _C.set_cpu_isa(_isa)
    if _C.build_info()["cpu_int8_active"]:
        INT8_TABLES.append(_isa)
_C.set_cpu_isa("auto")
HAS_INT8 = bool(INFO["cpu_int8_active"])  # the automatic table has INT8 kernels (VNNI / NEON dot product)
needs_int8 = pytest.mark.skipif(not HAS_INT8, reason="the CPU's table has no INT8 kernels (no AVX512-VNNI / "
                                "NEON dot product here)")
INT8_TACTICS = [t["name"] for t in _C.cpu_linear_tactics() if not t["test_only"] and t["isa"] == INFO["cpu_kernels_active"]]


def test_weight_quantization_is_the_stated_scheme():
    w = np.array([[0.5, -1.0, 0.25, 1.0 / 254], [0.0, 0.0, 0.0, 0.0], [3.0, -3.0, 1.5, 0.0117]], np.float32)
    q, s = quantize_weight_int8(w)
    assert q.dtype == np.int8 and s.dtype == np.float32 and WEIGHT_SCHEME == "w8-per-channel-symmetric"
    np.testing.assert_array_equal(s, np.float32([1.0 / 127, 1.0, 3.0 / 127]))
    # 0.5 * 127 = 63.5 -> 64 (half to even), 0.25 * 127 = 31.75 -> 32, 1/254 * 127 = 0.5 -> 0 (half to even)
    np.testing.assert_array_equal(q[0], [64, -127, 32, 0])
    np.testing.assert_array_equal(q[1], [0, 0, 0, 0])  # a zero row: scale 1, q 0
    np.testing.assert_array_equal(q[2], [127, -127, 64, 0])
    r = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)
    q, s = quantize_weight_int8(r)
    assert q.min() >= -127 and np.abs(q).max(axis=1).min() == 127  # every row uses its full range, never -128
    err = np.abs(dequantize_weight_int8(q, s) - r)
    assert np.all(err <= 0.5 * s[:, None] * (1 + 1e-6))
    for bad in (np.array([[np.nan, 1.0]], np.float32), np.array([[np.inf, 1.0]], np.float32)):
        with pytest.raises(ValueError, match="NaN or inf"):
            quantize_weight_int8(bad)
    with pytest.raises(ValueError, match="2-D"):
        quantize_weight_int8(np.ones(4, np.float32))


def _rule(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row quantization rule in numpy float32: inv = 127 / amax, q = rint(x * inv) clamped, scale = amax / 127;
    amax below 1e-30 (127 / amax would overflow below ~3.7e-37): a zero row, scale 0; inf or NaN: scale NaN."""
    q = np.zeros(x.shape, np.int8)
    scale = np.zeros(x.shape[0], np.float32)
    for r, row in enumerate(x):
        if not np.isfinite(row).all():
            scale[r] = np.nan
            continue
        amax = np.float32(np.abs(row).max())
        if amax < np.float32(1e-30):  # zero, or so small that 127 / amax would overflow: a zero row
            continue
        inv = np.float32(127.0) / amax
        q[r] = np.clip(np.rint(row * inv), -127, 127).astype(np.int8)
        scale[r] = amax / np.float32(127.0)
    return q, scale


@pytest.mark.parametrize("isa", INT8_TABLES or ["scalar"])
def test_activation_quantization_is_the_rule_bit_for_bit(isa):
    rng = np.random.default_rng(5)
    rows = [rng.standard_normal(n).astype(np.float32) * 3 for n in (1, 2, 3, 5, 15, 16, 17, 31, 33, 37, 100)]
    step = np.float32(2.0) / np.float32(127.0)
    ties = (np.arange(-20, 21, dtype=np.float32) + np.float32(0.5)) * step  # values at half steps
    specials = [np.zeros(7, np.float32), np.array([0, 1, np.inf, 2], np.float32),
                np.array([1, np.nan, 0.5], np.float32), np.array([-np.inf] * 3, np.float32),
                np.concatenate([ties, np.float32([2.0])]), np.array([1e-30, -1e-30, 5e-39], np.float32),
                np.array([1e-37, -3e-37, 5e-39], np.float32), np.array([9.9e-31, 0.0], np.float32),
                np.array([3e38, -3e38, 1.0], np.float32)]
    _C.set_cpu_isa(isa)
    try:
        for row in rows + specials:
            q, s = _C.quantize_i8(row[None])
            wq, ws = _rule(row[None])
            np.testing.assert_array_equal(q, wq, err_msg=str(row[:8]))
            np.testing.assert_array_equal(s, ws, err_msg=str(row[:8]))
    finally:
        _C.set_cpu_isa("auto")


# shapes: in_dim not a multiple of 4 (k-quad padding) and below one quad, N not a multiple of 16, row groups of 1..16,
# several groups and row blocks (96; 256 for the tile tactics), K4 above the 96/128-quad k-blocks and not a multiple of 16 (the AMX tail)
SHAPES = [(1, 37, 20), (7, 3, 16), (12, 192, 48), (13, 257, 33), (64, 513, 64), (100, 720, 40), (37, 1440, 17),
          (300, 68, 40)]


def _case(rows, K, N, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, K)).astype(np.float32)
    w = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
    return x, w, rng.standard_normal(N).astype(np.float32), rng.standard_normal((rows, N)).astype(np.float32)


def _prologue(x, kind, g, b):
    x = x.astype(np.float64)
    if kind == "silu":
        return x / (1 + np.exp(-x))
    if kind == "gn_silu":
        m = x.mean(1, keepdims=True)
        v = ((x - m) ** 2).mean(1, keepdims=True)
        y = (x - m) / np.sqrt(v + 1e-5) * g + b
        return y / (1 + np.exp(-y))
    return x


@pytest.mark.parametrize("isa", INT8_TABLES or ["scalar"])
@pytest.mark.parametrize("prologue", ["none", "silu", "gn_silu"])
def test_int8_linear_within_the_half_step_bound(isa, prologue):
    _C.set_cpu_isa(isa)
    try:
        for rows, K, N in SHAPES:
            x, w, b, res = _case(rows, K, N, rows * 7 + K)
            q, s = quantize_weight_int8(w)
            g = (1 + 0.1 * np.arange(K) / K).astype(np.float32)
            beta = np.linspace(-0.2, 0.2, K).astype(np.float32)
            y = _C.fused_linear(x, q, b, prologue=prologue, gamma=g, beta=beta, residual=res, weight_scale=s)
            a = _prologue(x, prologue, g, beta)
            wd = dequantize_weight_int8(q, s).astype(np.float64)
            ref = a @ wd.T + b + res
            step = np.abs(a).max(1, keepdims=True) / 127
            bound = 0.5 * 1.01 * step * np.abs(wd).sum(1)[None, :] + 1e-5 * (1 + np.abs(ref))
            assert np.all(np.abs(y - ref) <= bound), (rows, K, N, float(np.max(np.abs(y - ref) / bound)))
            # and it is not the FP32 arithmetic under another name
            y32 = _C.fused_linear(x, wd.astype(np.float32), b, prologue=prologue, gamma=g, beta=beta, residual=res)
            assert not np.array_equal(y, y32)
    finally:
        _C.set_cpu_isa("auto")


@needs_int8
def test_every_int8_tactic_of_the_table_gives_the_same_outputs_bit_for_bit():
    """Exact INT32 sums: VNNI (packed or row-major activations, any row group) and AMX (one panel x 16 rows, 2 x 2
    tiles over 2 panels x 32 rows) tactics give identical outputs, so an engine may mix them across batch buckets."""
    names = [t for t in INT8_TACTICS]
    ran = set()
    for rows, K, N in SHAPES:
        x, w, b, res = _case(rows, K, N, K)
        q, s = quantize_weight_int8(w)
        kw = dict(prologue="gn_silu", gamma=np.ones(K, np.float32), beta=np.zeros(K, np.float32), residual=res,
                  weight_scale=s)
        base = _C.fused_linear(x, q, b, **kw)
        for name in names:
            try:
                y = _C.fused_linear(x, q, b, tactic=name, **kw)
            except ValueError as e:  # a tactic that does not apply to INT8 (e.g. an FP32 two-panel kernel)
                assert "does not apply" in str(e)
                continue
            ran.add(name)
            assert np.array_equal(y, base), (name, rows, K, N)
    assert len(ran) >= 5, ran
    if INFO["cpu_kernels_active"] == "avx512" and _amx_usable():
        assert {"cpu.avx512.amx.mr16.mc256", "cpu.avx512.amx.mr32.mc256.np2"} <= ran, ran


def _amx_usable() -> bool:
    try:
        x, w, b, _ = _case(2, 64, 16, 0)
        q, s = quantize_weight_int8(w)
        _C.fused_linear(x, q, b, weight_scale=s, tactic="cpu.avx512.amx.mr16.mc256")
        return True
    except ValueError:
        return False


@needs_int8
def test_int8_tables_agree_bit_for_bit_where_their_prologues_agree():
    """x86's unsigned codes (q + 128, minus 128 x colsum) and the scalar table's signed codes give the same INT32 sums
    and the same epilogue: identical outputs with prologue none."""
    if len(INT8_TABLES) < 2:
        pytest.skip("one INT8 table here")
    x, w, b, res = _case(70, 515, 50, 1)
    q, s = quantize_weight_int8(w)
    outs = []
    for isa in INT8_TABLES:
        _C.set_cpu_isa(isa)
        try:
            outs.append(_C.fused_linear(x, q, b, residual=res, weight_scale=s))
        finally:
            _C.set_cpu_isa("auto")
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])


@needs_int8
def test_int8_linear_rows_do_not_depend_on_batch_or_threads():
    x, w, b, _ = _case(150, 384, 80, 3)
    q, s = quantize_weight_int8(w)
    kw = dict(prologue="gn_silu", gamma=np.ones(384, np.float32), beta=np.zeros(384, np.float32), weight_scale=s)
    full = _C.fused_linear(x, q, b, threads=2, **kw)
    for a, e in ((0, 1), (5, 17), (11, 107), (96, 150)):
        assert np.array_equal(_C.fused_linear(x[a:e], q, b, threads=1, **kw), full[a:e]), (a, e)


def test_int8_op_rejects_bad_weights_and_scales():
    x = np.ones((2, 8), np.float32)
    q = np.ones((4, 8), np.int8)
    s = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="weight_scale"):
        _C.fused_linear(x, q)
    with pytest.raises(ValueError, match="weight_scale is only for int8"):
        _C.fused_linear(x, q.astype(np.float32), weight_scale=s)
    with pytest.raises(ValueError, match="weight_scale must have shape"):
        _C.fused_linear(x, q, weight_scale=np.ones(3, np.float32))
    if not HAS_INT8:
        return
    for bad_s in (np.float32([1, 1, -1, 1]), np.float32([1, 0, 1, 1]), np.float32([1, np.nan, 1, 1])):
        with pytest.raises(ValueError, match="scales finite and > 0"):
            _C.fused_linear(x, q, weight_scale=bad_s)
    q2 = q.copy()
    q2[1, 3] = -128
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        _C.fused_linear(x, q2, weight_scale=s)


def _run_with_isa(isa: str, code: str, features_off: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "LFDN_EDGE_CPU_ISA": isa, "LFDN_EDGE_CPU_FEATURES_OFF": features_off}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


REFUSAL = r"""
import numpy as np
from lfdn_edge import _C
info = _C.build_info()
print("active", info["cpu_kernels_active"], info["cpu_int8_active"])
try:
    _C.fused_linear(np.ones((2, 32), np.float32), np.ones((16, 32), np.int8), weight_scale=np.ones(16, np.float32))
except RuntimeError as e:
    print("REFUSED", e)
else:
    print("RAN")
"""


@pytest.mark.parametrize("isa", ["avx512", "avx2", "neon"])
def test_int8_is_refused_on_a_table_without_int8_kernels(isa):
    """A CPU without the INT8 instructions (here: turned off with LFDN_EDGE_CPU_FEATURES_OFF, as the kernel tables
    see a CPU that lacks them) refuses int8 with a RuntimeError naming what is missing; the same table with the
    feature on runs it."""
    if isa not in INFO["cpu_kernels_usable"]:
        pytest.skip(f"{isa} table not usable here")
    feature = {"avx512": "avx512vnni", "avx2": "avxvnni", "neon": "dotprod"}[isa]
    out = _run_with_isa(isa, REFUSAL, features_off=f"amx,{feature}")
    assert out.returncode == 0, out.stderr
    assert f"active {isa} False" in out.stdout
    assert "REFUSED" in out.stdout and "no silent INT8 fallback" in out.stdout, out.stdout
    if isa in INT8_TABLES:
        on = _run_with_isa(isa, REFUSAL)
        assert f"active {isa} True" in on.stdout and "RAN" in on.stdout, on.stdout


# ------------------------------------------------------------------------------------------- the engine
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


@needs_int8
def test_int8_engine_within_stated_tolerance_of_the_fp32_reference(ckpt, z0):
    eng = ne._engine(ckpt, "int8")
    assert eng.precision == "int8"
    out = eng.score(z0)
    ref, _ = ne._reference(ckpt, z0)
    # measured (Intel Xeon with AVX512-VNNI and AMX, 2026-12-06): mse 3.0e-3 relative, cosines 2.1e-2, mfsim 9.3e-3
    # (BF16 on the same model: 8.3e-4, 7.6e-3, 1.9e-3); bounds about 2.5x the measured
    np.testing.assert_allclose(out["mse"], ref["mse"], rtol=1e-2)
    np.testing.assert_allclose(out["stage_cos"], ref["stage_cos"], rtol=0, atol=5e-2)
    np.testing.assert_allclose(out["mfsim"], ref["mfsim"], rtol=0, atol=2.5e-2)
    f32 = ne._engine(ckpt, "fp32").score(z0)
    assert not np.array_equal(out["stage_cos"], f32["stage_cos"])


@needs_int8
def test_int8_engine_rows_do_not_depend_on_batch_threads_or_tactics(ckpt, z0):
    eng1, eng2 = ne._engine(ckpt, "int8", threads=1), ne._engine(ckpt, "int8", threads=2)
    full = eng2.score(z0)
    for a, b in ((0, 1), (3, 10), (10, 37), (1, 14)):
        part = eng1.score(z0[a:b])
        for k in ("mse", "mfsim", "stage_cos"):
            assert np.array_equal(part[k], full[k][a:b]), (k, a, b)
    # a different tactic per bucket (AMX where usable, else another VNNI blocking) changes no score
    other = next((t for t in ("cpu.avx512.amx.mr32.mc256.np2", "cpu.avx512.mr12.kc128.mc96.rowa", "cpu.scalar.mr4.kc256.mc96")
                  if t in INT8_TACTICS and (t != "cpu.avx512.amx.mr32.mc256.np2" or _amx_usable())), None)
    if other is None:
        pytest.skip("no second INT8 tactic on this table")
    for kind in range(3):
        eng2.set_tactic(_C.tactic_bucket(37), kind, other)
    again = eng2.score(z0)
    for k in ("mse", "mfsim", "stage_cos"):
        assert np.array_equal(again[k], full[k]), k


def test_int8_engine_is_refused_where_the_table_has_no_int8(ckpt, z0):
    if not HAS_INT8:
        with pytest.raises(RuntimeError, match="no silent INT8 fallback"):
            ne._engine(ckpt, "int8")
        return
    eng = ne._engine(ckpt, "int8")
    for isa in [t for t in INFO["cpu_kernels_usable"] if t not in INT8_TABLES]:
        _C.set_cpu_isa(isa)
        try:
            with pytest.raises(RuntimeError, match="no silent INT8 fallback"):
                ne._engine(ckpt, "int8")
            with pytest.raises(RuntimeError, match=f"active table is '{isa}'"):
                eng.score(z0)
        finally:
            _C.set_cpu_isa("auto")
    assert np.isfinite(eng.score(z0)["mse"]).all()


def test_int8_spec_errors_are_clear(ckpt):
    from lfdn_edge.builder.native_payload import spec_from_checkpoint

    spec = spec_from_checkpoint(ckpt, "int8")
    assert spec["weight_scheme"] == WEIGHT_SCHEME and spec["inp_w"].dtype == np.int8
    bad = dict(spec)
    del bad["inp_w_scale"]
    with pytest.raises(KeyError, match="inp_w_scale"):
        _C.CpuEngine(bad, 4, 1)
    bad = dict(spec, fc1_w_scale=[s.copy() for s in spec["fc1_w_scale"]])
    bad["fc1_w_scale"][1][3] = 0.0
    with pytest.raises(ValueError):
        _C.CpuEngine(bad, 4, 1)
    bad = dict(spec, out_w=spec["out_w"].astype(np.float32))
    with pytest.raises(TypeError, match="spec precision is int8"):
        _C.CpuEngine(bad, 4, 1)


@needs_int8
def test_int8_artifact_round_trip_build_command_and_backend(ckpt, z0, tmp_path):
    from lfdn_edge.artifact.file import read_engine
    from lfdn_edge.builder.dispatch import build_engine
    from lfdn_edge.cli.build import build_parser
    from lfdn_edge.runtime.backends.native_backend import NativeBackend

    ck_path = tmp_path / "m.pt"
    ckpt.save(ck_path)
    assert build_parser().parse_args(["c.pt", "--int8"]).precision == "int8"
    assert build_parser().parse_args(["c.pt", "--precision", "int8"]).precision == "int8"
    path = build_engine(ck_path, "auto", "int8", batch=(1, 16, 64))  # int8 with auto: the native engine
    art = read_engine(path)
    h = art.header
    assert h["backend"] == "native" and h["precision"] == "int8"
    assert h["native"]["weight_scheme"] == WEIGHT_SCHEME and h["int8"]["weight_scheme"] == WEIGHT_SCHEME
    assert h["int8"]["activation_scheme"].startswith("dynamic per-row")
    dtypes = {t["name"]: t["dtype"] for t in h["native"]["tensors"]}
    assert dtypes["inp_w"] == "int8" and dtypes["fc1_w.0"] == "int8" and dtypes["fc2_w_scale.2"] == "float32"
    out = NativeBackend(art, "cpu", tactics="off").run(z0)
    direct = ne._engine(ckpt, "int8").score(z0)
    assert np.array_equal(np.asarray(out.mfsim), direct["mfsim"])


@needs_int8
def test_int8_tactic_selection_verifies_every_candidate_and_rejects_a_wrong_one(ckpt):
    """Selection on an INT8 engine runs the INT8 candidates of its table (AMX ones where usable) against the
    float64 reference under the half-step rule (tactic_tolerance(kI8)); the deliberately wrong tactic (last
    k-block dropped) fails it and is never chosen."""
    from lfdn_edge.artifact.file import EngineArtifact
    from lfdn_edge.artifact.header import common_header
    from lfdn_edge.builder.native_payload import build_native_artifact
    from lfdn_edge.runtime.backends.native_backend import NativeBackend

    batch = (1, 64, 64)
    extras, payload = build_native_artifact(ckpt, "int8", batch, False)
    art = EngineArtifact({**common_header(ckpt, "native", "int8", batch, False), **extras}, payload)
    eng = NativeBackend(art, "cpu", tactics="off").engine
    wrong = "cpu.test.drop_last_kblock"
    fake = {n: 1e-3 for n in INT8_TACTICS}
    fake[wrong] = 1e-9
    for bucket, kind in ((0, 0), (2, 1), (2, 2)):
        r = eng.select_tactic(bucket, kind, test_only=[wrong], fake_times=fake, warmup=0, samples=2)
        by = {c["name"]: c for c in r["results"]}
        assert by[wrong]["applies"] and not by[wrong]["passed"] and by[wrong]["max_err_ratio"] > 1
        ran = [n for n, c in by.items() if c["applies"] and n != wrong]
        assert ran and all(by[n]["passed"] and 0 <= by[n]["max_err_ratio"] <= 1 for n in ran), by
        # the half-step rule is not loose: the candidates use a visible part of it (activations really rounded)
        assert max(by[n]["max_err_ratio"] for n in ran) > 1e-3
        if _amx_usable():
            assert any(".amx." in n for n in ran)
        assert r["chosen"] != wrong
