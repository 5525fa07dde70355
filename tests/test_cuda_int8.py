"""INT8 weight streaming on CUDA (issue #26 part 3): the packed CUDA INT8 blob, the tactics cuda.i8_stream_r8 /
cuda.i8_stream_r16 executed by the project's PTX interpreter (tools/ptxsim) with the launches the real C++
launchers make, against the CPU reference on the same INT8 weights, and an INT8 CUDA engine's score pass.

The CPU reference of the INT8 kernels is op 2's float64 CPU reference (_C.fused_linear_reference, the one every
tactic is verified against) applied to the INT8 model's weights dequantize_weight_int8(q, scale) = fp32(q *
scale), the values the on-device reference kernel uses for a kI8 problem. The INT8 tactics must meet the FP16
rule cuda_tactic_tolerance(K) (their products a_h * q are exact); the FP16 tactics running an INT8 problem (on
the blob's FP16 copy) the INT8 rule cuda_tactic_tolerance(K, 'int8') (one more FP16 rounding, of the weight).
Paths: the compute_80 PTX on a virtual sm_90 device (cp.async ring) and the compute_75 PTX on a virtual sm_75
device (register double buffering). The interpreter's memcheck / initcheck / racecheck / synccheck are on."""

from __future__ import annotations

import numpy as np
import pytest

from ptxsim_project import SM75, SM90, COUNTER_BYTES, Gpu, _C, captured, need_capture

from lfdn_edge.builder.quantize import dequantize_weight_int8, quantize_weight_int8

I8_TACTICS = {"cuda.i8_stream_r8": 8, "cuda.i8_stream_r16": 16}


@pytest.fixture(scope="module")
def _capture():
    need_capture()


@pytest.fixture(scope="module")
def gpu80(_capture):
    return Gpu("compute_80")


@pytest.fixture(scope="module")
def gpu75(_capture):
    return Gpu("compute_75")


class I8Problem:
    """One fused linear problem with INT8 weights (quantize_weight_int8 of a random float weight) in interpreted
    device memory, and its CPU reference on the same INT8 weights."""

    def __init__(self, gpu: Gpu, rows: int, in_dim: int, out_dim: int, prologue: str = "gn", residual: str = "none",
                 seed: int = 0, extreme: bool = False):
        rng = np.random.default_rng(seed)
        self.rows, self.K, self.N, self.prologue, self.residual = rows, in_dim, out_dim, prologue, residual
        x = rng.standard_normal((rows, in_dim)).astype(np.float32)
        if extreme:  # the last row needs the FP16 guard (SiLU layers) or the GroupNorm rescaling
            x[-1] *= np.float32(2.0 ** 40)
        w = rng.standard_normal((out_dim, in_dim)) / np.sqrt(in_dim)
        w[:, 0] *= 4  # a few large weights per row: the per-channel scales differ
        self.q, self.scale = quantize_weight_int8(w)
        self.w = dequantize_weight_int8(self.q, self.scale)  # the INT8 model's weights, float32
        self.x, self.bias = x, rng.standard_normal(out_dim).astype(np.float32)
        self.gamma = (1 + 0.1 * rng.standard_normal(in_dim)).astype(np.float32)
        self.beta = (0.1 * rng.standard_normal(in_dim)).astype(np.float32)
        self.res = rng.standard_normal((rows, out_dim)).astype(np.float32)
        d = gpu.dev
        self.packed = _C.cuda_pack_linear_i8(self.q, self.scale)
        self.px, self.pw, self.pbias = d.upload(x, "x"), d.upload(self.packed, "weight"), d.upload(self.bias, "bias")
        self.pgamma, self.pbeta = d.upload(self.gamma, "gamma"), d.upload(self.beta, "beta")
        self.pres = d.upload(self.res, "residual") if residual == "separate" else 0
        self.pout = (d.upload(self.res, "out") if residual == "in_place" else
                     d.alloc(4 * rows * out_dim, "out", initialized=False))
        self.ws_bytes = _C.cuda_tactic_workspace_bytes(rows, in_dim, out_dim)
        self.pws = d.alloc(self.ws_bytes, "workspace")
        d.gmem.mark_uninitialized(self.pws + COUNTER_BYTES, self.ws_bytes - COUNTER_BYTES)
        self.gpu = gpu

    def params(self, precision: str = "int8") -> dict:
        return {"x": self.px, "out": self.pout, "weight": self.pw, "bias": self.pbias,
                "residual": self.pout if self.residual == "in_place" else self.pres,
                "gamma": self.pgamma if self.prologue == "gn" else 0, "beta": self.pbeta if self.prologue == "gn" else 0,
                "workspace": self.pws, "workspace_bytes": self.ws_bytes, "rows": self.rows, "in_dim": self.K,
                "out_dim": self.N, "prologue": self.prologue, "gn_eps": 1e-5, "precision": precision}

    def output(self) -> np.ndarray:
        return self.gpu.dev.read(self.pout, np.float32, self.rows * self.N).reshape(self.rows, self.N)

    def reference(self):
        res = self.res if self.residual != "none" else None
        g, b = (self.gamma, self.beta) if self.prologue == "gn" else (None, None)
        return _C.fused_linear_reference(self.x, self.w, self.bias, res, g, b, self.prologue, 1e-5)

    def error_ratio(self, precision: str = "fp16") -> float:
        """The verification rule with the tolerance of `precision` ('fp16': the tighter FP16 rule)."""
        ref, scale = self.reference()
        ratio, _ = _C.tactic_error_ratio(self.output(), ref, scale, 0.0, 0.0,
                                         _C.cuda_tactic_tolerance(self.K, precision))
        return ratio


def run(gpu: Gpu, name: str, prob: I8Problem, device: dict = SM90, precision: str = "int8") -> dict:
    res = _C._cuda_capture_tactic(name, prob.params(precision), device)
    if res["status"] == 0:
        gpu.run(res["calls"])
    return res


def check(gpu, name, rows, K, N, prologue="gn", residual="none", extreme=False, device=SM90, seed=0) -> float:
    prob = I8Problem(gpu, rows, K, N, prologue, residual, seed=seed, extreme=extreme)
    res = run(gpu, name, prob, device)
    assert res["status"] == 0, f"{name} rows {rows}: status {res['status']}"
    return prob.error_ratio("fp16")


def _gpu():
    from lfdn_edge.native_core import cuda_usable

    return cuda_usable()


gpu_only = pytest.mark.skipif(not _gpu()[0], reason=f"CUDA not runnable here: {_gpu()[1]}")


# ---------------------------------------------------------------------------------------------- the packed blob
def test_packed_blob_layout(_capture):
    """FP16 copy fp16(q * scale) (Np, Kp) first (the FP16 tactics read it as a cuda_pack_linear weight), then the
    codes (Np, Kp), then the scales (Np); zero padding everywhere; -128 and bad scales refused."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((70, 100))
    q, s = quantize_weight_int8(w)
    b = _C.cuda_pack_linear_i8(q, s)
    kp, np_ = 128, 128  # 100 -> multiple of 32, 70 -> multiple of 64
    e = kp * np_
    assert b.dtype == np.uint8 and b.nbytes == 3 * e + 4 * np_
    h = b[:2 * e].view(np.float16).reshape(np_, kp)
    codes = b[2 * e:3 * e].view(np.int8).reshape(np_, kp)
    sc = b[3 * e:].view(np.float32)
    np.testing.assert_array_equal(codes[:70, :100], q)
    assert not codes[70:].any() and not codes[:, 100:].any()
    np.testing.assert_array_equal(sc[:70], s)
    assert not sc[70:].any()
    np.testing.assert_array_equal(h[:70, :100], dequantize_weight_int8(q, s).astype(np.float16))
    assert not h[70:].any() and not h[:, 100:].any()
    # the FP16 section is exactly what cuda_pack_linear makes of the dequantized weight
    np.testing.assert_array_equal(h, _C.cuda_pack_linear(dequantize_weight_int8(q, s)).view(np.float16))
    bad = q.copy()
    bad[3, 4] = -128
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        _C.cuda_pack_linear_i8(bad, s)
    for v in (0.0, -1.0, np.inf, np.nan):
        s2 = s.copy()
        s2[5] = v
        with pytest.raises(ValueError, match="finite and > 0"):
            _C.cuda_pack_linear_i8(q, s2)
    with pytest.raises(TypeError, match="int8"):
        _C.cuda_pack_linear_i8(q.astype(np.int16), s)
    with pytest.raises(ValueError):
        _C.cuda_pack_linear_i8(q, s[:-1])


def test_tolerance_rules(_capture):
    for k in (1, 720, 1440):
        assert _C.cuda_tactic_tolerance(k, "int8") == pytest.approx(2 * (2 * 2.0 ** -11 + (k + 2) * 2.0 ** -24),
                                                                    rel=1e-12)
        assert _C.cuda_tactic_tolerance(k, "fp16") == _C.cuda_tactic_tolerance(k)
    with pytest.raises(ValueError, match="precision"):
        _C.cuda_tactic_tolerance(8, "bf16")


# ---------------------------------------------------------------------------------------------- launches (no GPU)
def _vparams(rows, k, n, **kw):
    d = dict(x=1 << 32, out=2 << 32, weight=3 << 32, bias=4 << 32, gamma=5 << 32, beta=6 << 32, workspace=7 << 32,
             workspace_bytes=_C.cuda_tactic_workspace_bytes(rows, k, n), rows=rows, in_dim=k, out_dim=n,
             prologue="gn", precision="int8")
    d.update(kw)
    return d


@pytest.mark.parametrize("sms, splits", [(132, 3), (16, 1)])
def test_i8_launch_is_the_launchers_split(_capture, sms, splits):
    """cuda.i8_stream_r8 on the paper's 1440 x 1440 block layer at batch 1: Kp 1440, Np 1472, 16 columns per CTA
    -> 92 column blocks; k-steps of 512 codes -> 3 steps; splits = min(ceil(2 sms / 92), 3): 3 on an H100 (132
    SMs: 276 CTAs), 1 on an Orin AGX (16 SMs: 92 CTAs already fill it). The codes start at 2 Np Kp bytes into
    the blob, the scales at 3 Np Kp."""
    r = _C._cuda_capture_tactic("cuda.i8_stream_r8", _vparams(1, 1440, 1440), {"sms": sms})
    assert r["status"] == 0
    pro, st = r["calls"]
    assert pro["kernel"] == "lfdn::cuda::tac::prologue_kernel"
    assert st["kernel"] == "lfdn::cuda::tac::i8_stream_kernel<8, 4>"
    assert (st["grid"], st["block"], st["smem"]) == ((92, splits, 1), (128, 1, 1), 0)
    import struct

    # I8StreamArgs: a, q, wscale, partial, counters, EpilogueArgs {out, residual, bias, scale, rows, N}, Kp, Np,
    # ks, splits
    a, q, ws, partial, counters, out, res, bias, scale, rows, n, kp, np_, ks, sp = struct.unpack_from(
        "<9Q5qi", st["args"][0])
    assert (rows, n, kp, np_, sp) == (1, 1440, 1440, 1472, splits)
    assert ks == (512 if splits == 3 else 1536)
    assert (q, ws) == ((3 << 32) + 2 * 1472 * 1440, (3 << 32) + 3 * 1472 * 1440)
    assert (out, bias, res, counters) == (2 << 32, 4 << 32, 0, 7 << 32)


def test_i8_tactics_apply_to_int8_problems_up_to_their_rows_only(_capture):
    for name, maxr in I8_TACTICS.items():
        for rows in (1, maxr, maxr + 1):
            r = _C._cuda_capture_tactic(name, _vparams(rows, 100, 70))
            assert (r["status"] == 0) == (rows <= maxr), (name, rows, r["status"])
        r = _C._cuda_capture_tactic(name, _vparams(1, 100, 70, precision="fp16"))
        assert r == {"status": -6, "calls": []}  # kUnsupported: an FP16 weight has no codes
    with pytest.raises(ValueError, match="precision"):
        _C._cuda_capture_tactic("cuda.i8_stream_r8", _vparams(1, 100, 70, precision="int4"))
    # the FP16 tactics take an INT8 problem (the blob's FP16 copy is at the weight pointer)
    for name in ("cuda.legacy_tile", "cuda.stream_r8", "cuda.mma_m32", "cuda.cublaslt"):
        r = _C._cuda_capture_tactic(name, _vparams(5, 100, 70))
        assert r["status"] == 0, name
        kernels = [c for c in r["calls"] if c["kind"] == "kernel"]
        assert not any("i8_" in c["kernel"] for c in kernels)


# ---------------------------------------------------------------------------------------------- interpreted
@pytest.mark.parametrize("name, rows", [("cuda.i8_stream_r8", r) for r in (1, 2, 5, 8)] +
                         [("cuda.i8_stream_r16", r) for r in (1, 9, 13, 16)])
def test_i8_tactic_against_the_cpu_reference(gpu80, name, rows):
    """K = 100, N = 70 (neither a multiple of any tile: Kp 128 -> a lane's last 16 codes are padding, Np 128),
    GroupNorm + SiLU prologue: within the FP16 rule of the reference on the same INT8 weights."""
    ratio = check(gpu80, name, rows, 100, 70, "gn", "none", seed=rows)
    assert ratio <= 1.0, f"{name} rows {rows}: error {ratio:.3g} x the tolerance"


@pytest.mark.parametrize("name", list(I8_TACTICS))
def test_i8_residual_extreme_rows_and_prologues(gpu80, name):
    rows = 5
    assert check(gpu80, name, rows, 72, 40, "gn", "in_place", extreme=True, seed=3) <= 1.0
    assert check(gpu80, name, rows, 40, 24, "silu", "separate", extreme=True, seed=4) <= 1.0  # FP16 guard
    assert check(gpu80, name, rows, 24, 40, "none", "none", seed=5) <= 1.0


@pytest.mark.parametrize("name, rows", [("cuda.i8_stream_r8", 5), ("cuda.i8_stream_r16", 16)])
def test_i8_sm75_register_double_buffering(gpu75, name, rows):
    """compute_75 PTX on an sm_75 device: no cp.async, the next k-step loaded into registers."""
    assert check(gpu75, name, rows, 600, 70, "gn", "in_place", device=SM75, seed=rows) <= 1.0


def test_i8_paper_size_layer_batch_1_split_k_and_replay(gpu80):
    """The paper's 1440-wide block layer at batch 1 with the H100's split (3 k-slices, 276 CTAs), the in-place
    residual of fc2; run twice (a graph replay): the split-K counters are left zero and the result is right
    both times."""
    prob = I8Problem(gpu80, 1, 1440, 1440, "gn", "in_place", seed=7)
    res = run(gpu80, "cuda.i8_stream_r8", prob)
    assert res["status"] == 0 and prob.error_ratio("fp16") <= 1.0
    assert not gpu80.dev.read(prob.pws, np.int32, 4096).any()
    first = prob.output().copy()
    gpu80.dev.write(prob.pout, prob.res)  # the residual again (in place)
    assert run(gpu80, "cuda.i8_stream_r8", prob)["status"] == 0
    np.testing.assert_array_equal(prob.output(), first)  # deterministic split order
    assert not gpu80.dev.read(prob.pws, np.int32, 4096).any()


@pytest.mark.parametrize("name, rows", [("cuda.legacy_tile", 5), ("cuda.stream_r32", 32), ("cuda.mma_m64", 65),
                                        ("cuda.mma_splitk_m32", 33), ("cuda.cublaslt", 20)])
def test_fp16_tactics_on_the_int8_blob(gpu80, name, rows):
    """Buckets above 16 rows run the FP16 tactics on the blob's FP16 copy: within the INT8 rule of the reference
    on the INT8 weights q * scale (the copy is one FP16 rounding away from them)."""
    prob = I8Problem(gpu80, rows, 100, 70, "gn", "in_place", seed=rows)
    assert run(gpu80, name, prob)["status"] == 0
    assert prob.error_ratio("int8") <= 1.0


def test_reference_kernel_on_int8_weights(gpu80):
    """The on-device reference of a kI8 problem uses q * scale (not the FP16 copy): within FP32 accumulation of
    the float64 CPU reference on the dequantized weights."""
    rows, K, N = 3, 100, 70
    prob = I8Problem(gpu80, rows, K, N, "gn", "separate", seed=11)
    d = gpu80.dev
    pref, pbound = d.alloc(4 * rows * N, "ref", initialized=False), d.alloc(4 * rows * N, "bound", initialized=False)
    gpu80.run(captured(_C._cuda_capture_reference(prob.params(), pref, pbound, SM90)))
    ref, scale = prob.reference()
    got = d.read(pref, np.float32, rows * N).reshape(rows, N)
    assert np.all(np.abs(got - ref) <= (K + 2) * 2.0 ** -23 * scale + 1e-30)
    # and it is NOT the FP16 copy's result: the two differ by more than FP32 accumulation somewhere
    fp16_ref, _ = _C.fused_linear_reference(prob.x, prob.w.astype(np.float16), prob.bias, prob.res, prob.gamma,
                                            prob.beta, "gn", 1e-5)
    assert np.max(np.abs(fp16_ref - ref) / scale) > 4 * (K + 2) * 2.0 ** -23


# ---------------------------------------------------------------------------------------------- a whole INT8 pass
LAYOUT = (16, 24, 40, 112, 320)


def _specs(width=96, depth=2, emb_dim=48, steps=2):
    """(the 'int8' engine spec, the 'fp32' spec of the same INT8 model: every weight dequantize_weight_int8(q, s))."""
    from lfdn_edge import benchmark as bench
    from lfdn_edge.builder.native_payload import native_spec
    from lfdn_edge.diffusion import Schedule
    from lfdn_edge.reference import ScoreConfig

    ck = bench.paper_checkpoint(seed=1, stage_dims=LAYOUT, width=width, depth=depth, emb_dim=emb_dim)
    ck.data["score"] = ScoreConfig(t=5, steps=steps, eta=1.0, seed=123).to_dict()
    spec8 = native_spec(ck.build_model("ema"), Schedule(), ck.score_config, ck.layout, "int8")
    spec32 = {k: v for k, v in spec8.items() if not k.endswith("_scale") and k != "weight_scheme"}
    spec32["precision"] = "fp32"
    spec32["inp_w"] = dequantize_weight_int8(spec8["inp_w"], spec8["inp_w_scale"])
    spec32["out_w"] = dequantize_weight_int8(spec8["out_w"], spec8["out_w_scale"])
    for key in ("fc1_w", "fc2_w"):
        spec32[key] = [dequantize_weight_int8(q, s) for q, s in zip(spec8[key], spec8[key + "_scale"])]
    return spec8, spec32


@pytest.fixture(scope="module")
def int8_specs():
    from lfdn_edge import benchmark as bench

    return (*_specs(), bench.standardised_inputs(5, LAYOUT, seed=9))


@pytest.mark.parametrize("plan", [
    {"inp": "cuda.i8_stream_r8", "fc1": "cuda.i8_stream_r16", "fc2": "cuda.i8_stream_r8", "out": "cuda.i8_stream_r16"},
    {"inp": None, "fc1": "cuda.mma_m32", "fc2": "cuda.i8_stream_r16", "out": "cuda.stream_r8"},
], ids=["int8_tactics", "mixed_with_fp16_on_the_copy"])
def test_whole_int8_score_pass_against_the_cpu_engine(_capture, int8_specs, plan):
    """An 'int8' spec through the CUDA engine's memory plan (packed CUDA INT8 blobs), creation launches and one
    score pass, kernel by kernel in the interpreter, against the CPU engine (FP32) on the same INT8 model's
    weights, with the tolerances of the on-GPU engine test (mse rtol 2e-2, stage cosines atol 1e-2)."""
    spec8, spec32, z0 = int8_specs
    gpu = Gpu("compute_80")
    rows, d = len(z0), gpu.dev
    cap = _C._cuda_capture_score_pass(spec8, rows, rows, plan, d.gmem.next_free(), SM90)
    assert cap["status"] == 0, cap["status"]
    C, W, D = spec8["in_dim"], spec8["width"], spec8["depth"]

    def blob(k, n):
        return -(-_C.cuda_pack_linear_i8(np.zeros((n, k), np.int8), np.ones(n, np.float32)).nbytes // 256) * 256

    assert cap["regions"]["weights"][1] == blob(C, W) + 2 * D * blob(W, W) + blob(W, C)  # 3 bytes per weight
    for name, (addr, nbytes) in sorted(cap["regions"].items(), key=lambda kv: kv[1][0]):
        d.gmem.map(addr, nbytes, name, initialized=False)
    for addr, data in cap["init"]:
        d.write(addr, np.frombuffer(data, np.uint8))
    d.write(cap["inputs"]["z0"][0], z0)
    kernels = [c["kernel"] for c in cap["calls"] if c["kind"] == "kernel"]
    n_i8 = sum("i8_stream_kernel" in k for k in kernels)
    n_i8_layers = sum(1 for layer in ("inp", "fc1", "fc2", "out") if (plan[layer] or "").startswith("cuda.i8_"))
    per_layer = {"inp": 1, "fc1": D, "fc2": D, "out": 1}
    assert n_i8 == spec8["steps"] * sum(per_layer[k] for k in per_layer if (plan[k] or "").startswith("cuda.i8_"))
    assert n_i8_layers > 0
    gpu.run(cap["calls"])
    out = cap["outputs"]
    mse = d.read(out["mse"][0], np.float32, rows)
    cos = d.read(out["cos"][0], np.float32, rows * len(LAYOUT)).reshape(rows, -1)
    ref = _C.CpuEngine(spec32, rows, 0).score(z0)
    np.testing.assert_allclose(mse, ref["mse"], rtol=2e-2)
    np.testing.assert_allclose(cos, ref["stage_cos"], atol=1e-2)


# ---------------------------------------------------------------------------------------------- mutants
MUTANTS = {
    # the per-channel scale never applied: every output off by its channel's scale (the tolerance sees it)
    "scale_dropped": ("store_out(p.e, r, n, v * p.wscale[n]);", "store_out(p.e, r, n, v);", AssertionError),
    # the codes read as unsigned offsets (q + 128 never corrected): wrong weights
    "offset_binary_not_applied": ("const uint32_t u = w ^ 0x80808080u;", "const uint32_t u = w;", AssertionError),
    # the wait for this thread's cp.async slot: the ring is read before the copy lands (initcheck)
    "removed_cp_async_wait": (
        "  for (int t = 0; t < steps; ++t) {\n    cp_async_wait<kStreamStages - 2>();  // step t has landed (this "
        "thread's own copies)\n    const int nt = t + kStreamStages - 1;\n    const int64_t kn = k_of(nt);\n    if "
        "(nt < steps && kn < k_end)\n#pragma unroll\n      for (int j = 0; j < NW; ++j) cp_async16(&ring[nt % "
        "kStreamStages][j][tid], wptr(j, kn), 16);",
        "  for (int t = 0; t < steps; ++t) {\n    const int nt = t + kStreamStages - 1;\n    const int64_t kn = "
        "k_of(nt);\n    if (nt < steps && kn < k_end)\n#pragma unroll\n      for (int j = 0; j < NW; ++j) "
        "cp_async16(&ring[nt % kStreamStages][j][tid], wptr(j, kn), 16);", None),
    # the second 8 k of a lane's 16 codes multiplied by the first 8 activations again
    "second_half_activations": ("p.a + static_cast<int64_t>(r) * p.Kp + k + 8 * h));",
                                "p.a + static_cast<int64_t>(r) * p.Kp + k));", AssertionError),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_mutant_is_caught(tmp_path, _capture, mutant):
    """Each mutant of the INT8 kernel (csrc/cuda/kernels/tactics.cuh), compiled by nvcc and run through
    test_i8_tactic_against_the_cpu_reference's case (cuda.i8_stream_r16, rows 9), is caught: by the interpreter's
    initcheck or by the tolerance rule. The unmutated source passes the same case."""
    import ptxsim
    from test_ptxsim_mutations import mutant_ptx

    old, new, caught_by = MUTANTS[mutant]
    caught_by = caught_by or ptxsim.InitcheckError
    gpu = Gpu("compute_80", ptx={"tactics": mutant_ptx(tmp_path, old, new)}, label=f"mutant {mutant}")
    with pytest.raises(caught_by) as e:
        ratio = check(gpu, "cuda.i8_stream_r16", 9, 100, 70, "gn", "none", seed=9)
        assert ratio <= 1.0, f"error {ratio:.3g} x the tolerance"
    if caught_by is AssertionError:
        assert "x the tolerance" in str(e.value)
    else:
        assert "i8_stream_kernel" in str(e.value)


def test_reference_mutant_using_the_fp16_copy_is_caught(tmp_path, _capture):
    """The reference kernel computing a kI8 problem from the FP16 copy instead of q * scale is caught by
    test_reference_kernel_on_int8_weights's check."""
    from test_ptxsim_mutations import mutant_ptx

    old = "a.q ? static_cast<float>(a.q[n * a.Kp + k]) * a.wscale[n] : __half2float(a.w[n * a.Kp + k]);"
    gpu = Gpu("compute_80", ptx={"tactics": mutant_ptx(tmp_path, old, "__half2float(a.w[n * a.Kp + k]);")},
              label="mutant reference")
    with pytest.raises(AssertionError):
        test_reference_kernel_on_int8_weights(gpu)


# ---------------------------------------------------------------------------------------------- on a GPU
@gpu_only
def test_gpu_int8_engine_verifies_times_and_scores():
    """On a GPU: an 'int8' CudaEngine (max batch 64: buckets 1, 8, 64). The INT8 tactics are candidates at
    buckets 1 and 8 (i8_stream_r8 and _r16 both apply), verified against the reference on the INT8 weights and
    timed; at bucket 64 they do not apply and the FP16 tactics on the blobs' FP16 copies are chosen. Scores
    within the on-GPU engine test's tolerances of the CPU engine on the same INT8 model's weights."""
    from lfdn_edge import benchmark as bench
    from lfdn_edge.native_core import NativeCudaEngine

    spec8, spec32 = _specs()
    eng = NativeCudaEngine(spec8, 64)
    assert list(eng.engine.buckets) == [1, 8, 64]
    for bucket in (1, 8, 64):
        recs = eng.engine.select_tactics(bucket, iters=3)
        for name, maxr in I8_TACTICS.items():
            rs = [r for r in recs if r["name"] == name]
            assert rs and all(r["applies"] == (bucket <= maxr) for r in rs), (name, bucket, rs)
            if bucket <= maxr:
                assert all(r["passed"] and r["median_us"] > 0 and r["worst_ratio"] <= 1.0 for r in rs), rs
        assert sum(r["chosen"] for r in recs) == len(eng.engine.layer_keys)
    for rows in (1, 5, 40):
        z0 = bench.standardised_inputs(rows, LAYOUT, seed=rows)
        mse, _, cos = eng.score(z0)
        ref = _C.CpuEngine(spec32, rows, 0).score(z0)
        np.testing.assert_allclose(mse.cpu().numpy(), ref["mse"], rtol=2e-2)
        np.testing.assert_allclose(cos.cpu().numpy(), ref["stage_cos"], atol=1e-2)


@gpu_only
def test_gpu_forced_int8_tactic_is_used(monkeypatch):
    """LFDN_EDGE_TACTIC=cuda.i8_stream_r8,cuda.i8_stream_r16: where they apply (buckets <= 16) they are the
    choice (verified); above, the forced names apply nowhere and the selection falls back to every candidate."""
    from lfdn_edge import benchmark as bench
    from lfdn_edge.native_core import NativeCudaEngine

    monkeypatch.setenv("LFDN_EDGE_TACTIC", "cuda.i8_stream_r8,cuda.i8_stream_r16")
    spec8, spec32 = _specs()
    eng = NativeCudaEngine(spec8, 16)
    z0 = bench.standardised_inputs(16, LAYOUT, seed=3)
    mse, _, _ = eng.score(z0)
    chosen = eng.engine.tactics()
    assert chosen and all(v.startswith("cuda.i8_stream_") for (k, b), v in chosen.items()), chosen
    np.testing.assert_allclose(mse.cpu().numpy(), _C.CpuEngine(spec32, 16, 0).score(z0)["mse"], rtol=2e-2)
