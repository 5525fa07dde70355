"""Every CUDA kernel of lfdn-edge executed by the PTX interpreter (tools/ptxsim), launched exactly as the C++
launchers configure it (grid, block, shared memory and argument bytes captured from the real host code,
lfdn/cuda_launch.h), and held to the CPU reference with the rule on-device verification uses.

Shapes: rows 1, 5, 33, 65 (each tactic where it applies), K and N that are not multiples of the tiles, the
in-place residual of the fc2 layers, the extreme rows (FP16 guard, GroupNorm rescaling), and the paper-size
1440 x 1440 layer at batch 1. Paths: the compute_80 PTX on a virtual sm_90 device (cp.async, ldmatrix,
mma.sync) and the compute_75 PTX on a virtual sm_75 device (the fallbacks). The interpreter's checkers
(memcheck, initcheck, racecheck, synccheck) are on in every run: any finding fails the test."""

from __future__ import annotations

import numpy as np
import pytest

from ptxsim_project import SM75, SM90, Gpu, LinearProblem, _C, captured, need_capture, run_tactic

pytestmark = pytest.mark.usefixtures("_capture")

TACTICS = ["cuda.legacy_tile", "cuda.stream_r8", "cuda.stream_r32", "cuda.mma_m64", "cuda.mma_m32",
           "cuda.mma_splitk_m32", "cuda.cublaslt"]
MAX_ROWS = {"cuda.stream_r8": 8, "cuda.stream_r32": 32, "cuda.mma_splitk_m32": 128}


@pytest.fixture(scope="module")
def _capture():
    need_capture()


@pytest.fixture(scope="module")
def gpu80():
    return Gpu("compute_80")


@pytest.fixture(scope="module")
def gpu75():
    return Gpu("compute_75")


def _applies(name, rows):
    return rows <= MAX_ROWS.get(name, 1 << 30)


def check_tactic(gpu: Gpu, name: str, rows: int, K: int, N: int, prologue: str = "gn", residual: str = "none",
                 extreme: bool = False, device: dict = SM90, seed: int = 0) -> float:
    """Runs tactic `name` on one problem in the interpreter; the error ratio against the CPU reference
    (<= 1 passes). Raises the interpreter's finding, if any."""
    prob = LinearProblem(gpu, rows, K, N, prologue, residual, seed=seed, extreme=extreme)
    res = run_tactic(gpu, name, prob, device)
    assert res["status"] == 0, f"{name} rows {rows}: status {res['status']}"
    return prob.error_ratio()


# ---------------------------------------------------------------------------------------------- every tactic
def tactic_case(gpu: Gpu, name: str, rows: int) -> None:
    """test_tactic's case (also run on mutated kernels by tests/test_ptxsim_mutations.py)."""
    if not _applies(name, rows):
        prob = LinearProblem(gpu, rows, 100, 70)
        assert _C._cuda_capture_tactic(name, prob.params(), SM90)["status"] != 0  # refused, not run wrong
        return
    # K = 100, N = 70: neither is a multiple of any tile (K pads to 128, N to 128 / 80)
    ratio = check_tactic(gpu, name, rows, 100, 70, "gn", "none")
    assert ratio <= 1.0, f"{name} rows {rows}: error {ratio:.3g} x the tolerance"


@pytest.mark.parametrize("rows", [1, 5, 8, 32, 33, 65])  # 8 and 32: the streaming kernels' largest batches
@pytest.mark.parametrize("name", TACTICS)
def test_tactic(gpu80, name, rows):
    tactic_case(gpu80, name, rows)


@pytest.mark.parametrize("name", TACTICS)
def test_tactic_in_place_residual_and_extreme_rows(gpu80, name):
    rows = 5
    assert check_tactic(gpu80, name, rows, 72, 40, "gn", "in_place", extreme=True, seed=3) <= 1.0
    assert check_tactic(gpu80, name, rows, 40, 24, "silu", "separate", seed=4) <= 1.0
    assert check_tactic(gpu80, name, rows, 24, 40, "none", "none", seed=5) <= 1.0


@pytest.mark.parametrize("name", ["cuda.legacy_tile", "cuda.stream_r8", "cuda.stream_r32", "cuda.cublaslt"])
@pytest.mark.parametrize("rows", [1, 5, 33])
def test_sm75_fallback_paths(gpu75, name, rows):
    """compute_75 PTX: the streaming kernel's register double buffering (no cp.async), the legacy WMMA tile."""
    if not _applies(name, rows):
        return
    assert check_tactic(gpu75, name, rows, 100, 70, "gn", "in_place", device=SM75, seed=rows) <= 1.0


def test_mma_tactics_refused_on_sm75(gpu75):
    prob = LinearProblem(gpu75, 5, 64, 64)
    for name in ("cuda.mma_m64", "cuda.mma_m32", "cuda.mma_splitk_m32"):
        assert _C._cuda_capture_tactic(name, prob.params(), SM75)["status"] != 0


@pytest.mark.parametrize("name", ["cuda.stream_r8", "cuda.mma_m32", "cuda.mma_splitk_m32", "cuda.legacy_tile",
                                  "cuda.cublaslt"])
def test_paper_size_layer_batch_1(gpu80, name):
    """The paper's 1440-wide block layer (fc1: GroupNorm + SiLU prologue) at batch 1: split-K over 132 SMs."""
    assert check_tactic(gpu80, name, 1, 1440, 1440, "gn", "in_place", seed=7) <= 1.0


def test_split_k_counters_left_zero(gpu80):
    """The last CTA of each column block resets its counter: a second call (graph replay) is right too."""
    prob = LinearProblem(gpu80, 3, 1440, 300, "gn", "none", seed=8)
    for _ in range(2):
        res = run_tactic(gpu80, "cuda.stream_r8", prob)
        assert res["status"] == 0 and prob.error_ratio() <= 1.0
        counters = gpu80.dev.read(prob.pws, np.int32, 4096)
        assert not counters.any()


# ---------------------------------------------------------------------------------------------- the other kernels
@pytest.fixture(params=["compute_80", "compute_75"])
def any_gpu(request):
    """Both PTX architectures (with the matching virtual device) for the kernels without arch-specific code."""
    return (request.getfixturevalue("gpu80"), SM90) if request.param == "compute_80" else \
        (request.getfixturevalue("gpu75"), SM75)


@pytest.mark.parametrize("rows,K,N", [(1, 100, 70), (33, 40, 24)])
def test_reference_kernel(any_gpu, rows, K, N):
    """The kernel on-device verification trusts: ref within FP32 accumulation of the float64 reference, bound
    = the reference's scale to FP32 accuracy."""
    gpu, device = any_gpu
    prob = LinearProblem(gpu, rows, K, N, "gn", "separate", seed=11)
    d = gpu.dev
    pref, pbound = d.alloc(4 * rows * N, "ref", initialized=False), d.alloc(4 * rows * N, "bound", initialized=False)
    gpu.run(captured(_C._cuda_capture_reference(prob.params(), pref, pbound, device)))
    ref, scale = prob.reference()
    got = d.read(pref, np.float32, rows * N).reshape(rows, N)
    bound = d.read(pbound, np.float32, rows * N).reshape(rows, N)
    assert np.all(np.abs(got - ref) <= (K + 2) * 2.0 ** -23 * scale + 1e-30)
    np.testing.assert_allclose(bound, scale, rtol=(K + 2) * 2.0 ** -23)


def _f32_ulps(a, b):
    ia = a.view(np.int32).astype(np.int64)
    ib = b.view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return np.abs(ia - ib)


@pytest.mark.parametrize("rows,dim", [(1, 333), (3, 100)])
def test_noise_kernel(any_gpu, rows, dim):
    """Philox + Box-Muller in float64 as the GPU runs it (libdevice's log/cos sequences, the slow-path
    argument reduction, all interpreted): within 1 float32 ulp of the Python generator and almost all
    bit-identical, the criterion of the on-GPU test."""
    from lfdn_edge.noise import gaussian_noise

    gpu, device = any_gpu
    d = gpu.dev
    z0 = np.random.default_rng(12).standard_normal((rows, dim)).astype(np.float32)
    keys = np.arange(rows, dtype=np.uint64) * 7 + 3
    pz, pk, pout = d.upload(z0), d.upload(keys), d.alloc(4 * rows * dim, "out", initialized=False)
    gpu.run(captured(_C._cuda_capture_noise({"z0": pz, "out": pout, "image_keys": pk, "rows": rows, "dim": dim,
                                              "seed": 2**35 + 9, "stream": 4, "a": 0.5, "b": 2.0}, device)))
    got = d.read(pout, np.float32, rows * dim).reshape(rows, dim)
    want = _C.noise_inject(z0, 2**35 + 9, 4, 0.5, 2.0, image_keys=keys)
    ulps = _f32_ulps(got, want)
    assert ulps.max() <= 1 and np.mean(ulps == 0) >= 0.99, (int(ulps.max()), float(np.mean(ulps == 0)))
    assert np.abs(gaussian_noise(2**35 + 9, 4, dim, image_keys=keys)).max() > 2  # a real normal sample


@pytest.mark.parametrize("rows", [1, 5])
def test_ddim_score_kernel(any_gpu, rows):
    from lfdn_edge.features import FeatureLayout

    layout = FeatureLayout((16, 24, 40, 112, 320))
    rng = np.random.default_rng(6 + rows)
    x, y, z0 = (rng.standard_normal((rows, layout.dim)).astype(np.float32) for _ in range(3))
    noise = rng.standard_normal(layout.dim).astype(np.float32)
    coef = dict(sqrt_ab_cur=0.98, sqrt_1m_ab_cur=0.2, c_x0=0.99, c_eps=0.1, sigma=0.05)
    ref = _C.ddim_score(y, x=x, coef=np.array(list(coef.values()), np.float32), noise=noise, z0=z0,
                        stage_offsets=list(layout.offsets))
    gpu, device = any_gpu
    d = gpu.dev
    M = len(layout.offsets) - 1
    px, py, pz, pn = d.upload(x), d.upload(y), d.upload(z0), d.upload(noise)
    pmse, pmf, pcos = d.alloc(4 * rows), d.alloc(4 * rows), d.alloc(4 * rows * M)
    gpu.run(captured(_C._cuda_capture_ddim_score(
        {"x": px, "x0_hat": py, "z0": pz, "noise": pn, "rows": rows, "dim": layout.dim, "update": True,
         "scores": True, "stage_offsets": list(layout.offsets), "mse": pmse, "mfsim": pmf, "stage_cos": pcos,
         **coef}, device)))
    got = {"x": d.read(px, np.float32, rows * layout.dim).reshape(rows, -1), "mse": d.read(pmse, np.float32, rows),
           "mfsim": d.read(pmf, np.float32, rows), "stage_cos": d.read(pcos, np.float32, rows * M).reshape(rows, M)}
    for k in ("x", "mse", "mfsim", "stage_cos"):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)


# ---------------------------------------------------------------------------------------------- a whole pass
LAYOUT = (16, 24, 40, 112, 320)


@pytest.fixture(scope="module")
def small_spec():
    from lfdn_edge import benchmark as bench
    from lfdn_edge.builder.native_payload import native_spec
    from lfdn_edge.diffusion import Schedule
    from lfdn_edge.reference import ScoreConfig

    ck = bench.paper_checkpoint(seed=1, stage_dims=LAYOUT, width=96, depth=2, emb_dim=48)
    ck.data["score"] = ScoreConfig(t=5, steps=2, eta=1.0, seed=123).to_dict()
    spec = native_spec(ck.build_model("ema"), Schedule(), ck.score_config, ck.layout, "fp16")
    return spec, bench.standardised_inputs(5, LAYOUT, seed=9)


@pytest.mark.parametrize("plan", [
    {"inp": None, "fc1": None, "fc2": None, "out": None},
    {"inp": "cuda.stream_r8", "fc1": "cuda.mma_m32", "fc2": "cuda.mma_splitk_m32", "out": "cuda.cublaslt"},
    {"inp": "cuda.mma_m64", "fc1": "cuda.stream_r32", "fc2": "cuda.stream_r8", "out": "cuda.mma_splitk_m32"},
], ids=["legacy", "mixed", "mixed2"])
def test_whole_score_pass_against_the_cpu_engine(small_spec, plan):
    """The CUDA engine's creation (eps noise, workspace memset) and one score pass, kernel by kernel in the
    engine's launch order with its memory plan, against the CPU engine with the tolerances of the on-GPU
    engine test (mse rtol 2e-2, stage cosines atol 1e-2)."""
    whole_pass_case(Gpu("compute_80"), *small_spec, plan)


def whole_pass_case(gpu: Gpu, spec, z0, plan: dict) -> None:
    rows = len(z0)
    d = gpu.dev
    base = d.gmem.next_free()
    cap = _C._cuda_capture_score_pass(spec, rows, rows, plan, base, SM90)
    assert cap["status"] == 0, cap["status"]
    for name, (addr, nbytes) in sorted(cap["regions"].items(), key=lambda kv: kv[1][0]):
        d.gmem.map(addr, nbytes, name, initialized=False)
    for addr, blob in cap["init"]:
        d.write(addr, np.frombuffer(blob, np.uint8))
    za, zbytes = cap["inputs"]["z0"]
    assert zbytes >= z0.nbytes
    d.write(za, z0)
    kinds = [c["kernel"].split("::")[-1].split("<")[0] for c in cap["calls"] if c["kind"] == "kernel"]
    assert kinds[0] == "noise_kernel" and kinds[-1] == "ddim_score_kernel"
    gpu.run(cap["calls"])
    out = cap["outputs"]
    mse = d.read(out["mse"][0], np.float32, rows)
    cos = d.read(out["cos"][0], np.float32, rows * (len(LAYOUT))).reshape(rows, -1)
    ref = _C.CpuEngine(spec, rows, 0).score(z0)
    np.testing.assert_allclose(mse, ref["mse"], rtol=2e-2)
    np.testing.assert_allclose(cos, ref["stage_cos"], atol=1e-2)


def test_compute_75_mma_body_traps(gpu75):
    """The decision of lfdn/cuda_arch.h executed: compute_75 PTX of mma_kernel (JIT-compiled on an sm_80+
    device) is the __trap() body, so `applies` must refuse it; launched anyway, it traps."""
    import ptxsim

    prob = LinearProblem(gpu75, 5, 64, 64)
    calls = captured(_C._cuda_capture_tactic("cuda.mma_m32", prob.params(), SM90))
    with pytest.raises(ptxsim.TrapError, match="mma_kernel<32, false>"):
        gpu75.run(calls)


def test_test_only_wrong_tactic_is_caught_by_the_rule(gpu80):
    """cuda.test_no_bias (the legacy kernel without its bias, wrong on purpose): the interpreter runs it
    cleanly and the verification rule rejects its output."""
    assert check_tactic(gpu80, "cuda.test_no_bias", 5, 100, 70, "gn", "none") > 1.0
