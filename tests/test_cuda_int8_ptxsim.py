"""INT8 weight streaming on CUDA (issue #26 part 3) under the project's PTX interpreter (tools/ptxsim): the tactics
cuda.i8_stream_r8 / cuda.i8_stream_r16 executed with the launches the real C++ launchers make, against the CPU
reference on the same INT8 weights, and an 'int8' CUDA engine's whole score pass.

The CPU reference of the INT8 kernels is op 2's float64 CPU reference (_C.fused_linear_reference, the one every
tactic is verified against) applied to the INT8 model's weights dequantize_weight_int8(q, scale) = fp32(q *
scale), the values the on-device reference kernel uses for a kI8 problem. The INT8 tactics must meet the FP16
rule cuda_tactic_tolerance(K) (their products a_h * q are exact); the FP16 tactics running an INT8 problem (on
the blob's FP16 copy) the INT8 rule cuda_tactic_tolerance(K, 'int8') (one more FP16 rounding, of the weight).
Shapes: rows 1 .. 16, K and N that are not multiples of the tiles, GroupNorm + SiLU / SiLU / no prologue, separate
and in-place residuals, extreme rows (FP16 guard, GroupNorm rescaling), the paper's 1440 x 1440 layer at batch 1
(split-K). Paths: the compute_80 PTX on a virtual sm_90 device (cp.async ring) and the compute_75 PTX on a virtual
sm_75 device (register double buffering). The interpreter's memcheck / initcheck / racecheck / synccheck are on.
Mutants of the kernel and of the reference are compiled by nvcc and must be caught. CI's job: tools/gpu_check.sh
does not run this file on the GPU's clock."""

from __future__ import annotations

import numpy as np
import pytest

from ptxsim_project import SM75, SM90, COUNTER_BYTES, Gpu, _C, captured, need_capture
from test_cuda_int8 import I8_TACTICS, LAYOUT, _specs

from lfdn_edge.builder.quantize import dequantize_weight_int8, quantize_weight_int8


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
    weights: mse rtol 2e-3, stage cosines atol 2e-3 (10x tighter than the on-GPU engine test; measured
    2026-12-06: 1.7e-5 and 1.3e-4 with the INT8 tactics, 4.3e-5 and 4.3e-4 with cuda.legacy_tile on the copy)."""
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
    np.testing.assert_allclose(mse, ref["mse"], rtol=2e-3)
    np.testing.assert_allclose(cos, ref["stage_cos"], atol=2e-3)


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
