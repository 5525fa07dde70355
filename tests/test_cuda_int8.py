"""INT8 weight streaming on CUDA (issue #26 part 3), the parts that need no interpreter: the packed CUDA INT8 blob,
the tolerance rules, the launches the real C++ launchers make for cuda.i8_stream_r8 / cuda.i8_stream_r16 (captured,
no GPU), the GPU check's INT8 script (its dry run), and, on a GPU only, an 'int8' CudaEngine's selection (the INT8
tactics verified against the reference on the INT8 weights and timed), forced INT8 tactics, and its scores against
the CPU engine on the same INT8 model's weights. The kernels themselves run under the PTX interpreter in
tests/test_cuda_int8_ptxsim.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptxsim_project import _C, need_capture

from lfdn_edge.builder.quantize import dequantize_weight_int8, quantize_weight_int8

ROOT = Path(__file__).resolve().parent.parent
I8_TACTICS = {"cuda.i8_stream_r8": 8, "cuda.i8_stream_r16": 16}


@pytest.fixture(scope="module")
def _capture():
    need_capture()


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


# ---------------------------------------------------------------------------------------------- the GPU check
def test_gpu_check_int8_script_dry_run(tmp_path):
    """tools/gpu_check.sh's INT8 step: the script it writes (extracted here as the script writes it) runs in
    --dry-run mode without a GPU (with a CUDA build: an 'int8' spec of a small model through the engine's memory
    plan and a captured pass with INT8 launches), and the full mode runs it as a required step."""
    text = (ROOT / "tools" / "gpu_check.sh").read_text(encoding="utf-8")
    m = re.search(r"cat > \"\$INT8_PY\" <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert m, "the INT8 script is not in tools/gpu_check.sh"
    assert 'step int8 1 90 "$PY" "$INT8_PY" "$OUT/int8.json"' in text
    script = tmp_path / "int8_check.py"
    script.write_text(m.group(1), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "int8.json"), "--dry-run"], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    if _C.build_info()["cuda"]:
        assert "INT8 tactics in the module: ['cuda.i8_stream_r8', 'cuda.i8_stream_r16']" in p.stdout
        n = int(re.search(r"captured INT8 pass: status 0 \| (\d+) INT8 launches", p.stdout).group(1))
        assert n == 3 * (1 + 2 + 2 + 1)  # 3 evaluations (the default score config) x (inp, 2 fc1, 2 fc2, out)
