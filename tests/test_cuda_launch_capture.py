"""The launch capture (lfdn/cuda_launch.h, csrc/bindings/bind_capture.cpp): every CUDA kernel launch goes through
cuda::launch (csrc/cuda/util.cuh), and with a capture installed the REAL host launchers record what they would
launch (kernel, grid, block, dynamic shared memory, argument bytes) on a virtual device, with no GPU and no
CUDA runtime call. tools/ptxsim replays these calls on the PTX; these tests check, on this GPU-less machine, that
the captured configuration is the launchers' own arithmetic, that the names and argument sizes are those of
the PTX entries, the score pass's call sequence, and that the capture is off again after each call.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

pytestmark = pytest.mark.skipif(not _C.build_info()["cuda"], reason="module built without CUDA")

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
LAYOUT = (16, 24, 40, 112, 320)


def _params(rows, k, n, **kw):
    """Linear params on virtual addresses far enough apart that no buffer overlaps another."""
    d = dict(x=1 << 32, out=2 << 32, weight=3 << 32, bias=4 << 32, gamma=5 << 32, beta=6 << 32,
             workspace=7 << 32, workspace_bytes=_C.cuda_tactic_workspace_bytes(rows, k, n),
             rows=rows, in_dim=k, out_dim=n, prologue="gn")
    d.update(kw)
    return d


def _kernels(r):
    return [c for c in r["calls"] if c["kind"] == "kernel"]


def _ceil(a, b):
    return -(-a // b)


# ------------------------------------------------------------------------------------------- launch arithmetic
def test_stream_r8_grid_is_the_launchers_split():
    """cuda.stream_r8 at rows 5, 1440 -> 1440, 132 SMs. The documented rule (tactics_launch.cu stream_split):
    Kp = 1440 (in padded to 32), Np = 1472 (out padded to 64), one CTA per 4 * NW = 16 columns -> 92 column
    blocks; k-steps of 256 -> 6 steps; splits s = ceil(2 * sms / col_blocks) = ceil(264 / 92) = 3 (<= 16,
    <= steps); per = ceil(6 / 3) = 2 steps -> ks = 512, splits = ceil(1440 / 512) = 3. Grid (92, 3), 128
    threads; the prologue first: one CTA of 256 threads per row."""
    r = _C._cuda_capture_tactic("cuda.stream_r8", _params(5, 1440, 1440, prologue="silu"), {"sms": 132})
    assert r["status"] == 0
    pro, st = r["calls"]
    assert pro["kernel"] == "lfdn::cuda::tac::prologue_kernel"
    assert (pro["grid"], pro["block"], pro["smem"]) == ((5, 1, 1), (256, 1, 1), 0)
    assert st["kernel"] == "lfdn::cuda::tac::stream_kernel<8, 4>"
    assert (st["grid"], st["block"], st["smem"]) == ((92, 3, 1), (128, 1, 1), 0)
    # StreamArgs: a, w, partial, counters, EpilogueArgs {out, residual, bias, scale, rows, N}, Kp, Np, ks, splits
    (arg,) = st["args"]
    a, w, partial, counters, out, residual, bias, scale, rows, n, kp, np_, ks, splits = struct.unpack_from(
        "<8Q5qi", arg)
    assert (rows, n, kp, np_, ks, splits) == (5, 1440, 1440, 1472, 512, 3)
    assert (w, out, bias, residual) == (3 << 32, 2 << 32, 4 << 32, 0)
    assert counters == 7 << 32 and a > counters and partial > scale > a  # inside the tactic workspace
    # the prologue's PrologueArgs {x, gamma, beta, a, scale, gn_eps, mode, K, Kp}: mode 1 = SiLU
    x, _, _, pa, pscale, gn_eps, mode, k, kp2 = struct.unpack_from("<5Qfi2q", pro["args"][0])
    assert (x, pa, pscale, mode, k, kp2) == (1 << 32, a, scale, 1, 1440, 1440)


@pytest.mark.parametrize("sms, splits", [(132, 12), (46, 4), (16, 2), (1, 1)])
def test_mma_split_k_follows_the_virtual_devices_sms(sms, splits):
    """cuda.mma_splitk_m32, rows 20, 1440 -> 1440: 23 column tiles of 64, 45 k-tiles of 32;
    s = max(1, min(ceil(2 sms / 23), 16, 45 // 2)), kt_per = ceil(45 / s), splits = ceil(45 / kt_per):
    132 SMs -> s 12, kt_per 4, 12 splits; 46 -> 4, 12, 4; 16 -> 2, 23, 2; 1 -> 1, 45, 1."""
    r = _C._cuda_capture_tactic("cuda.mma_splitk_m32", _params(20, 1440, 1440), {"sms": sms})
    assert r["status"] == 0
    mma = _kernels(r)[-1]
    assert mma["kernel"] == "lfdn::cuda::tac::mma_kernel<32, true>"
    assert mma["grid"] == (23, 1, splits) and mma["block"] == (128, 1, 1)
    # MmaArgs: a, w, EpilogueArgs (48 bytes), Kp, Np, kt_per, splits, partial, counters
    kt_per, s = struct.unpack_from("<2i", mma["args"][0], 16 + 48 + 16)
    assert (kt_per, s) == (_ceil(45, splits), splits)


def test_mma_tactics_unsupported_below_compute_80_ptx():
    for name in ("cuda.mma_m64", "cuda.mma_m32", "cuda.mma_splitk_m32"):
        r = _C._cuda_capture_tactic(name, _params(20, 1440, 1440), {"mma_ptx": 75})
        assert r == {"status": -6, "calls": []}, name  # kUnsupported, nothing launched
        assert _C._cuda_capture_tactic(name, _params(20, 1440, 1440), {"mma_ptx": 80})["status"] == 0
    # the streaming kernels have a pre-sm_80 path: still usable with compute_75 PTX
    assert _C._cuda_capture_tactic("cuda.stream_r8", _params(5, 1440, 1440), {"mma_ptx": 75, "cc": 75,
                                                                                 "mma_binary": 75})["status"] == 0


def test_legacy_tile_and_cublaslt_launches():
    r = _C._cuda_capture_tactic("cuda.legacy_tile", _params(5, 1440, 720))
    (k,) = r["calls"]  # rows <= 16: one 16-row strip, 64-column tiles of the padded out dim (768 / 64 = 12)
    assert (k["kernel"], k["grid"], k["block"]) == ("lfdn::cuda::fused_linear_kernel<16, 64, 16, 16>", (12, 1, 1),
                                                    (128, 1, 1))
    (k,) = _C._cuda_capture_tactic("cuda.legacy_tile", _params(130, 1440, 720))["calls"]  # 64-row tiles: 3
    assert (k["kernel"], k["grid"]) == ("lfdn::cuda::fused_linear_kernel<64, 64, 32, 32>", (12, 3, 1))
    r = _C._cuda_capture_tactic("cuda.cublaslt", _params(20, 1440, 720))
    assert r["status"] == 0
    pro, gemm, epi = r["calls"]
    assert pro["kernel"] == "lfdn::cuda::tac::prologue_kernel"
    assert {k: gemm[k] for k in ("kind", "w", "rows", "kp", "n")} == {"kind": "cublaslt_gemm", "w": 3 << 32,
                                                                     "rows": 20, "kp": 1440, "n": 720}
    assert gemm["a"] == struct.unpack_from("<Q", pro["args"][0], 24)[0]  # the prologue's A
    # epilogue: min(ceil(20 * 720 / 256), 4096) = 57 blocks of 256; its second argument is the GEMM's D
    assert (epi["kernel"], epi["grid"], epi["block"]) == ("lfdn::cuda::tac::epilogue_kernel", (57, 1, 1), (256, 1, 1))
    assert struct.unpack("<Q", epi["args"][1])[0] == gemm["d"]
    # the reference: one thread per output, 128 per CTA
    (ref,) = _C._cuda_capture_reference(_params(20, 1440, 720), 8 << 32, 9 << 32)["calls"]
    assert (ref["kernel"], ref["grid"], ref["block"]) == ("lfdn::cuda::tac::reference_kernel", (113, 1, 1),
                                                          (128, 1, 1))


def test_noise_and_ddim_launches_and_bad_params():
    (k,) = _C._cuda_capture_noise({"out": 1 << 32, "rows": 3, "dim": 1000, "seed": 7, "stream": 2})["calls"]
    assert (k["kernel"], k["grid"], k["block"]) == ("lfdn::cuda::noise_kernel", (12, 1, 1), (256, 1, 1))
    assert [len(a) for a in k["args"]] == [8, 8, 8, 8, 8, 8, 8, 4, 4, 4]
    assert struct.unpack("<Q", k["args"][6])[0] == 7 and struct.unpack("<I", k["args"][7])[0] == 2
    (k,) = _C._cuda_capture_noise({"out": 1 << 32, "rows": 1000, "dim": 100000})["calls"]
    assert k["grid"] == (65535, 1, 1)  # capped (grid-stride loop)
    r = _C._cuda_capture_ddim_score({"x0_hat": 1 << 32, "z0": 2 << 32, "rows": 3, "dim": 512, "scores": True,
                                     "stage_offsets": [0, 16, 512], "mse": 3 << 32, "mfsim": 4 << 32,
                                     "stage_cos": 5 << 32})
    (k,) = r["calls"]
    assert (k["kernel"], k["grid"], k["block"]) == ("lfdn::cuda::ddim_score_kernel", (3, 1, 1), (128, 1, 1))
    # a failing parameter check: its status, nothing launched
    assert _C._cuda_capture_noise({"out": 0, "rows": 3, "dim": 8}) == {"status": -1, "calls": []}
    with pytest.raises(ValueError, match="unknown key"):
        _C._cuda_capture_noise({"out": 1, "rows": 3, "dim": 8, "sed": 1})
    with pytest.raises(ValueError, match="unknown CUDA tactic"):
        _C._cuda_capture_tactic("cuda.nope", _params(1, 8, 8))


# ------------------------------------------------------------------------------------------- names and args = PTX
def _ptx_entries(tmp_path):
    """{demangled name without 'void ' and the parameter list: [param bytes, ...]} of the launchers' PTX."""
    nvcc, filt = shutil.which("nvcc"), shutil.which("c++filt")
    if nvcc is None or filt is None:
        pytest.skip("nvcc or c++filt not on PATH")
    sizes = {"8": 1, "16": 2, "32": 4, "64": 8}
    entries = {}
    for src in ("tactics_launch", "fused_linear_launch", "noise_launch", "ddim_score_launch"):
        out = tmp_path / f"{src}.ptx"
        subprocess.run([nvcc, "-std=c++17", "-ptx", "-arch=compute_80", f"-I{ROOT / 'csrc' / 'include'}",
                        f"-I{ROOT / 'csrc'}", "-o", str(out), str(ROOT / "csrc" / "cuda" / f"{src}.cu")],
                       check=True, capture_output=True, timeout=600)
        for m in re.finditer(r"\.entry (\w+)\(\s*(.*?)\)", out.read_text(), re.S):
            params = []
            for p in m.group(2).split(","):
                arr = re.search(r"\.b8 \w+\[(\d+)\]", p)
                params.append(int(arr.group(1)) if arr else sizes[re.search(r"\.[usfb](\d+) ", p).group(1)])
            name = subprocess.run([filt, m.group(1)], capture_output=True, text=True, check=True).stdout.strip()
            entries[name.removeprefix("void ").split("(")[0]] = params
    return entries


def test_kernel_names_and_argument_bytes_match_the_ptx_entries(tmp_path):
    entries = _ptx_entries(tmp_path)
    assert len(entries) == 14  # every kernel instantiation of tests/test_cuda_toolchains.py KERNELS
    calls = []
    for name in [t["name"] for t in _C.cuda_linear_tactics()]:
        for rows in (5, 20, 130):
            for prec in ("fp16", "int8"):  # int8: the INT8 tactics apply (and the FP16 ones on the blob's copy)
                r = _C._cuda_capture_tactic(name, _params(rows, 1440, 720, precision=prec))
                assert r["status"] in (0, -6), (name, rows)  # kOk, or kUnsupported above a tactic's rows
                calls += _kernels(r)
    calls += _kernels(_C._cuda_capture_reference(_params(20, 1440, 720), 8 << 32, 9 << 32))
    calls += _kernels(_C._cuda_capture_noise({"out": 1 << 32, "rows": 3, "dim": 1000}))
    calls += _kernels(_C._cuda_capture_ddim_score({"x0_hat": 1 << 32, "z0": 2 << 32, "rows": 3, "dim": 512,
                                                   "scores": True, "stage_offsets": [0, 16, 512], "mse": 3 << 32,
                                                   "mfsim": 4 << 32, "stage_cos": 5 << 32}))
    seen = set()
    for c in calls:
        assert c["kernel"] in entries, c["kernel"]
        assert [len(a) for a in c["args"]] == entries[c["kernel"]], c["kernel"]
        seen.add(c["kernel"])
    assert seen == set(entries)  # every kernel of the project is reached by some captured launcher


# ------------------------------------------------------------------------------------------- the score pass
@pytest.fixture(scope="module")
def spec():
    from lfdn_edge import benchmark as bench
    from lfdn_edge.builder.native_payload import native_spec
    from lfdn_edge.diffusion import Schedule
    from lfdn_edge.reference import ScoreConfig

    ck = bench.paper_checkpoint(seed=1, stage_dims=LAYOUT, width=192, depth=3, emb_dim=96)
    ck.data["score"] = ScoreConfig(t=5, steps=3, eta=1.0, seed=123).to_dict()
    return native_spec(ck.build_model("ema"), Schedule(), ck.score_config, ck.layout, "fp16")


def _layer(tactic):
    """The kernels one layer launches with a tactic (None: cuda.legacy_tile at <= 16 rows)."""
    if tactic is None:
        return ["lfdn::cuda::fused_linear_kernel<16, 64, 16, 16>"]
    main = {"cuda.stream_r8": ["lfdn::cuda::tac::stream_kernel<8, 4>"],
            "cuda.mma_splitk_m32": ["lfdn::cuda::tac::mma_kernel<32, true>"],
            "cuda.mma_m32": ["lfdn::cuda::tac::mma_kernel<32, false>"],
            "cuda.cublaslt": ["cublaslt_gemm", "lfdn::cuda::tac::epilogue_kernel"]}[tactic]
    return ["lfdn::cuda::tac::prologue_kernel", *main]


@pytest.mark.parametrize("plan", [{},
                                  {"inp": "cuda.stream_r8", "fc1": "cuda.mma_splitk_m32", "fc2": "cuda.mma_m32",
                                   "out": "cuda.cublaslt"}])
def test_score_pass_call_sequence(spec, plan):
    rows, max_batch, base = 5, 8, 0x7F00_0000_0000
    r = _C._cuda_capture_score_pass(spec, rows, max_batch, plan, base, {"sms": 132})
    assert r["status"] == 0
    C, W, D, S = spec["in_dim"], spec["width"], spec["depth"], spec["steps"]
    seq = [c["kernel"] if c["kind"] == "kernel" else c["kind"] for c in r["calls"]]
    step = [*_layer(plan.get("inp"))]
    for _ in range(D):
        step += _layer(plan.get("fc1")) + _layer(plan.get("fc2"))
    step += _layer(plan.get("out")) + ["lfdn::cuda::ddim_score_kernel"]
    # creation: the noise of each step into the small arrays' tail, the tactic workspace's memset; then the pass:
    # x = q_a z0 + q_b eps (one noise launch), and per DDIM step inp, (fc1, fc2) x depth, out, ddim_score
    assert seq == ["lfdn::cuda::noise_kernel"] * S + ["memset", "lfdn::cuda::noise_kernel"] + step * S

    regions = r["regions"]
    assert list(regions) == ["weights", "small", "workspace", "z0", "recon", "mse", "mfsim", "cos",
                             "tactic_workspace"]
    spans = sorted(regions.values())
    assert spans[0][0] == base
    for (a, n), (b, _) in zip(spans, spans[1:]):
        assert a % 256 == 0 and b % 256 == 0 and b - (a + n) >= 256
    # region sizes: the engine's memory plan
    assert regions["z0"][1] == regions["recon"][1] == 4 * max_batch * C
    assert regions["mse"][1] == regions["mfsim"][1] == 4 * max_batch
    assert regions["cos"][1] == 4 * max_batch * (len(spec["stage_offsets"]) - 1)
    assert regions["tactic_workspace"][1] == max(_C.cuda_tactic_workspace_bytes(max_batch, i, o)
                                                 for i, o in ((C, W), (W, W), (W, C)))
    memset = r["calls"][S]
    assert (memset["ptr"], memset["bytes"], memset["value"]) == (*regions["tactic_workspace"], 0)
    # init: the packed weights, then the small arrays up to eps; the noise kernels fill eps (+ step st * C)
    (w_addr, w_bytes), (s_addr, s_bytes) = [(a, len(b)) for a, b in r["init"]]
    assert (w_addr, w_bytes) == regions["weights"] and s_addr == regions["small"][0]
    for st, c in enumerate(r["calls"][:S]):
        assert struct.unpack("<Q", c["args"][1])[0] == s_addr + s_bytes + 4 * C * st  # out
        assert struct.unpack("<I", c["args"][7])[0] == st  # Philox stream
    assert s_bytes + 4 * C * S <= regions["small"][1]
    # the pass reads z0 and writes the outputs where the result says
    fwd = r["calls"][S + 1]
    assert struct.unpack("<Q", fwd["args"][0])[0] == r["inputs"]["z0"][0] == regions["z0"][0]
    assert r["inputs"]["z0"][1] == 4 * rows * C
    last = _kernels(r)[-1]
    # DdimArgs: x, x0_hat, z0, noise ... the last step's x0_hat is the reconstruction buffer
    assert struct.unpack_from("<Q", last["args"][0], 8)[0] == r["outputs"]["recon"][0] == regions["recon"][0]
    for k in ("mse", "mfsim", "cos"):
        assert r["outputs"][k][0] == regions[k][0]
    assert (r["rows"], r["in_dim"], r["num_stages"]) == (rows, C, len(spec["stage_offsets"]) - 1)


def test_score_pass_refuses_rows_above_max_batch_and_unknown_tactics(spec):
    r = _C._cuda_capture_score_pass(spec, 9, 8, {}, 1 << 40)
    assert r["status"] == -3  # kBatchAboveWorkspace (after the creation's launches)
    with pytest.raises(ValueError, match="unknown CUDA tactic"):
        _C._cuda_capture_score_pass(spec, 1, 8, {"inp": "cuda.nope"}, 1 << 40)
    with pytest.raises(ValueError, match="unknown key"):
        _C._cuda_capture_score_pass(spec, 1, 8, {"fc3": None}, 1 << 40)


# ------------------------------------------------------------------------------------------- capture is off after
def test_capture_is_off_after_each_call():
    """Under a capture cuBLASLt is 'available' and memsets / launches are recorded; after the call the CUDA runtime
    path is taken again (here, without a GPU, a CUDA error), also after a call that raised."""
    avail = _C.cublaslt_available()
    assert _C._cuda_capture_tactic("cuda.cublaslt", _params(4, 64, 64))["status"] == 0
    with pytest.raises(ValueError):
        _C._cuda_capture_tactic("cuda.stream_r8", {"rows": 1})  # in_dim missing: raised before the capture
    assert _C.cublaslt_available() == avail
    if _C.cuda_device_count() == 0:
        with pytest.raises(RuntimeError):
            _C.cuda_tactic_workspace_init(1 << 32, 256)
        with pytest.raises(RuntimeError):
            _C.cuda_noise_inject(1 << 32, 2, 8, 0, 0)
