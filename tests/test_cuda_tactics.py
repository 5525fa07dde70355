"""CUDA tactics (csrc/cuda/tactics_launch.cu, lfdn/cuda_tactics.h) and their selection/caching
(lfdn_edge.runtime.cuda_tactics).

Without a GPU (here, CI): the tactic table of the compiled module (stable names, one test-only wrong
tactic), the tolerance rule and workspace sizes, cuBLASLt's absence reported with the reason, the bench's
tactic list, and the Python cache logic against a stand-in engine with the _C.CudaEngine tactic interface:
selected -> cached -> reused, fingerprint change or corrupt/untrusted cache -> rebuilt, failing candidates
logged and never chosen, "off" -> cuda.legacy_tile, LFDN_EDGE_TACTIC -> forced and not cached.
On a GPU (skipped here, with the reason): every applicable tactic passes on a 1440-wide layer, the wrong one
is rejected, reruns are bit-identical, and the engine selects, refuses a failing tactic and runs a graph per
bucket. THE GPU PART HAS NEVER RUN: no GPU on the development machine.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

from lfdn_edge.runtime import cuda_tactics as ct  # noqa: E402
from lfdn_edge.runtime.tactic_cache import TacticCacheWarning  # noqa: E402

HAS_CUDA_BUILD = bool(_C.build_info()["cuda"])
needs_cuda_build = pytest.mark.skipif(not HAS_CUDA_BUILD, reason="module built without CUDA")
TABLE = ["cuda.legacy_tile", "cuda.stream_r8", "cuda.stream_r32", "cuda.mma_m64", "cuda.mma_m32",
         "cuda.mma_splitk_m32", "cuda.cublaslt", "cuda.i8_stream_r8", "cuda.i8_stream_r16", "cuda.test_no_bias"]
# the tactics that run only INT8 problems (precision 'int8': the packed CUDA INT8 blob; tests/test_cuda_int8.py)
I8_ONLY = ["cuda.i8_stream_r8", "cuda.i8_stream_r16"]


def _gpu():
    from lfdn_edge.native_core import cuda_usable

    return cuda_usable()


gpu = pytest.mark.skipif(not _gpu()[0], reason=f"CUDA not runnable here: {_gpu()[1]}")


# ------------------------------------------------------------------------------------------- no GPU needed
@needs_cuda_build
def test_tactic_table_names_are_stable_and_one_is_test_only():
    t = _C.cuda_linear_tactics()
    assert [x["name"] for x in t] == TABLE
    assert [x["name"] for x in t if x["test_only"]] == ["cuda.test_no_bias"]


@needs_cuda_build
def test_bench_lists_every_non_test_tactic():
    from lfdn_edge import benchmark as bench

    # the bench forces each of these on an FP16 artifact ('native-fp16 <tactic>'): the INT8-only tactics would
    # not apply there, so they are not in the list (a forced tactic that applies nowhere falls back silently)
    assert list(bench.CUDA_TACTICS) == [x["name"] for x in _C.cuda_linear_tactics()
                                        if not x["test_only"] and x["name"] not in I8_ONLY]
    names = bench.variant_names([bench.CUDA_TACTIC_VARIANT], ["fp16"], "fp32")
    assert names[0] == "native-fp16 auto" and names[1:] == [f"native-fp16 {t}" for t in bench.CUDA_TACTICS]


@needs_cuda_build
def test_tolerance_rule_and_workspace_sizes():
    for k in (1, 720, 1440):  # 2 x (2^-11 + (K + 2) 2^-24)
        assert _C.cuda_tactic_tolerance(k) == pytest.approx(2 * (2.0 ** -11 + (k + 2) * 2.0 ** -24), rel=1e-12)
    # counters (16 KiB) + A (rows x Kp halves) + scales + partials (max(16 min(rows,128), rows) x Np floats)
    # + cuBLASLt's workspace
    def expect(rows, k, n):
        def up(b):
            return (b + 255) // 256 * 256

        kp, np_ = (k + 31) // 32 * 32, (n + 63) // 64 * 64
        return (up(4 * 4096) + up(2 * rows * kp) + up(4 * rows) + up(4 * max(16 * min(rows, 128), rows) * np_)
                + (32 << 20))  # cuBLASLt's workspace (32 MiB: NVIDIA's size for Hopper)
    for rows, k, n in [(1, 1440, 1440), (64, 720, 1440), (1024, 1440, 720), (3, 5, 7)]:
        assert _C.cuda_tactic_workspace_bytes(rows, k, n) == expect(rows, k, n)
    assert _C.cuda_tactic_workspace_bytes(0, 8, 8) == 0


@needs_cuda_build
def test_cublaslt_absence_is_reported_with_the_reason(tmp_path):
    """dlopen only: a file that is not a library (LFDN_EDGE_CUBLASLT) and no libcublasLt on this machine ->
    unavailable, and the reason names the variables to set (in a fresh process: the lookup runs once)."""
    fake = tmp_path / "libcublasLt.so.12"
    fake.write_text("not an ELF file")
    code = ("import lfdn_edge._C as C, json; print(json.dumps([C.cublaslt_available(), C.cublaslt_info()]))")
    env = {"LFDN_EDGE_CUBLASLT": str(fake), "LFDN_EDGE_CUBLASLT_DIRS": str(tmp_path), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    ok, info = json.loads(out.stdout.strip().splitlines()[-1])
    if ok:  # a real libcublasLt on the loader path: then it must be a real file with its version
        assert "cublasLt version" in info
    else:
        assert "LFDN_EDGE_CUBLASLT" in info and "not found" in info


# ------------------------------------------------------------------------------------------- the cache (stand-in)
class FakeCudaEngine:
    """The tactic interface of _C.CudaEngine with scripted results: in every slot cuda.mma_m64 fails
    verification (and is fastest, so choosing it would be wrong), cuda.stream_r8 is the fastest passing one,
    cuda.legacy_tile passes; set_tactic refuses names in ``refuse``."""

    def __init__(self, driver=12040, refuse=()):
        self.buckets = [1, 2, 4]
        self.layer_keys = ["k8.n16.silu", "k16.n16.gn", "k16.n8.gn"]
        self.driver = driver
        self.refuse = set(refuse)
        self.selected, self.set_calls, self.choice = [], [], {}

    def device_info(self):
        return {"name": "Stand-in GPU", "compute_capability": "9.0", "sms": 132, "driver": self.driver,
                "runtime": 12020}

    def select_tactics(self, bucket, test_only, iters):
        self.selected.append(bucket)
        out = []
        for k in self.layer_keys:
            recs = [("cuda.legacy_tile", True, 30.0), ("cuda.stream_r8", True, 5.0), ("cuda.mma_m64", False, 1.0)]
            if "cuda.test_no_bias" in test_only:
                recs.append(("cuda.test_no_bias", False, 0.5))
            for name, passed, us in recs:
                out.append({"key": k, "bucket": bucket, "name": name, "applies": True, "status": 0,
                            "max_abs_err": 1e-4 if passed else 0.3, "tolerance": 1e-3, "worst_ratio": 0.1 if passed else 300,
                            "passed": passed, "median_us": us if passed else 0.0,
                            "error": "" if passed else "12 of 64 outputs outside the tolerance",
                            "chosen": name == "cuda.stream_r8"})
            self.choice[(k, bucket)] = "cuda.stream_r8"
        return out

    def set_tactic(self, key, bucket, name):
        if name in self.refuse:
            raise ValueError(f"CudaEngine.set_tactic: {name} failed verification")
        self.set_calls.append((key, bucket, name))
        self.choice[(key, bucket)] = name


def test_selected_then_cached_then_reused(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("LFDN_EDGE_TACTIC", raising=False)
    monkeypatch.delenv("LFDN_EDGE_TACTICS", raising=False)
    engine_file = tmp_path / "m.lfdn"
    e = FakeCudaEngine()
    with caplog.at_level(logging.WARNING, logger="lfdn_edge.tactics"):
        rep = ct.configure_cuda_engine(e, engine_file, progress=False, isolate=False)
    assert rep.source == "selected" and e.selected == [1, 2, 4]
    assert set(rep.choices.values()) == {"cuda.stream_r8"} and len(rep.choices) == 9
    assert {r["name"] for r in rep.rejected} == {"cuda.mma_m64"} and len(rep.rejected) == 9
    assert "cuda.mma_m64 rejected" in caplog.text
    cache = tmp_path / "m.lfdn.cuda-tactics.json"
    data = json.loads(cache.read_text())
    assert data["format"] == ct.FORMAT and data["fingerprint"]["gpu"] == "Stand-in GPU"
    assert data["choices"]["b4.k16.n16.gn"]["tactic"] == "cuda.stream_r8"
    assert {c["name"] for c in data["choices"]["b1.k8.n16.silu"]["candidates"]} == {
        "cuda.legacy_tile", "cuda.stream_r8", "cuda.mma_m64"}

    e2 = FakeCudaEngine()
    rep2 = ct.configure_cuda_engine(e2, engine_file, progress=False, isolate=False)
    assert rep2.source == "cache" and e2.selected == []
    assert sorted(e2.set_calls) == sorted((k, b, "cuda.stream_r8") for b in e2.buckets for k in e2.layer_keys)


def test_fingerprint_change_rebuilds(tmp_path, monkeypatch):
    monkeypatch.delenv("LFDN_EDGE_TACTIC", raising=False)
    f = tmp_path / "m.lfdn"
    ct.configure_cuda_engine(FakeCudaEngine(driver=12040), f, progress=False, isolate=False)
    e = FakeCudaEngine(driver=12080)  # a driver update
    rep = ct.configure_cuda_engine(e, f, progress=False, isolate=False)
    assert rep.source == "selected" and e.selected == [1, 2, 4]
    assert json.loads((tmp_path / "m.lfdn.cuda-tactics.json").read_text())["fingerprint"]["driver"] == 12080


@pytest.mark.parametrize("damage", ["garbage", "checksum", "missing_slot", "not_cuda"])
def test_untrusted_cache_is_ignored_and_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.delenv("LFDN_EDGE_TACTIC", raising=False)
    f = tmp_path / "m.lfdn"
    ct.configure_cuda_engine(FakeCudaEngine(), f, progress=False, isolate=False)
    path = tmp_path / "m.lfdn.cuda-tactics.json"
    data = json.loads(path.read_text())
    if damage == "garbage":
        path.write_text("{not json")
    else:
        if damage == "checksum":
            data["fingerprint"]["sms"] = 1
        elif damage == "missing_slot":
            del data["choices"]["b2.k16.n8.gn"]
        else:
            data["choices"]["b2.k16.n8.gn"]["tactic"] = "cpu.avx2.mr6"
        path.write_text(json.dumps(data))
    e = FakeCudaEngine()
    with pytest.warns(TacticCacheWarning):
        rep = ct.configure_cuda_engine(e, f, progress=False, isolate=False)
    assert rep.source == "selected" and e.selected == [1, 2, 4]


def test_cached_tactic_refused_by_the_device_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.delenv("LFDN_EDGE_TACTIC", raising=False)
    f = tmp_path / "m.lfdn"
    ct.configure_cuda_engine(FakeCudaEngine(), f, progress=False, isolate=False)
    e = FakeCudaEngine(refuse={"cuda.stream_r8"})  # e.g. it fails verification on this device now
    with pytest.warns(TacticCacheWarning, match="failed verification"):
        rep = ct.configure_cuda_engine(e, f, progress=False, isolate=False)
    assert rep.source == "selected" and e.selected == [1, 2, 4]


def test_off_uses_the_legacy_kernel_and_forced_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.delenv("LFDN_EDGE_TACTIC", raising=False)
    e = FakeCudaEngine()
    rep = ct.configure_cuda_engine(e, tmp_path / "a.lfdn", mode="off", progress=False, isolate=False)
    assert rep.source == "off" and set(rep.choices.values()) == {"cuda.legacy_tile"} and e.selected == []
    assert len(e.set_calls) == 9 and not (tmp_path / "a.lfdn.cuda-tactics.json").exists()
    monkeypatch.setenv("LFDN_EDGE_TACTIC", "cpu.avx2.mr6,cuda.stream_r8")
    e = FakeCudaEngine()
    rep = ct.configure_cuda_engine(e, tmp_path / "b.lfdn", progress=False, isolate=False)
    assert rep.source == "forced" and e.selected == [1, 2, 4]
    assert not (tmp_path / "b.lfdn.cuda-tactics.json").exists()


def test_whole_pass_check_against_cublaslt_keeps_the_faster_set(tmp_path, monkeypatch):
    monkeypatch.delenv("LFDN_EDGE_TACTIC", raising=False)
    # cuBLASLt does not apply to the last layer key (set_tactic refuses it there): that layer keeps its choice
    e = FakeCudaEngine()
    real_set = e.set_tactic

    def set_tactic(key, bucket, name):
        if name == ct.CUBLASLT and key == e.layer_keys[2]:
            raise ValueError("CudaEngine.set_tactic: cuda.cublaslt does not apply")
        real_set(key, bucket, name)

    e.set_tactic = set_tactic
    # bucket 1: per-layer choices faster; 2: cuBLASLt 10 % faster; 4: a tie (the per-layer choices stay)
    sel_s = {1: 0.8, 2: 1.0, 4: 1.0}
    blt_s = {1: 1.0, 2: 0.9, 4: 1.0}
    calls = []

    def fake_timer(bucket, rows):
        def t(variant):
            calls.append((bucket, variant))
            expect = "cuda.stream_r8" if variant == "selected" else ct.CUBLASLT
            assert [e.choice[(k, bucket)] for k in e.layer_keys[:2]] == [expect] * 2  # the engine runs the variant
            assert e.choice[(e.layer_keys[2], bucket)] == "cuda.stream_r8"
            return sel_s[bucket] if variant == "selected" else blt_s[bucket]
        return t

    rep = ct.configure_cuda_engine(e, tmp_path / "m.lfdn", progress=False, pass_timer=fake_timer, cublaslt=True, isolate=False)
    assert rep.source == "selected"
    assert {b: c["kept"] for b, c in rep.pass_checks.items()} == {"b1": True, "b2": False, "b4": True}
    for b in (1, 2, 4):
        for i, k in enumerate(e.layer_keys):
            want = ct.CUBLASLT if (b == 2 and i < 2) else "cuda.stream_r8"
            assert rep.choices[ct.slot(k, b)] == want and e.choice[(k, b)] == want, (b, k)
    assert [v for b, v in calls if b == 2] == ["selected", "cublaslt"] + ["selected", "cublaslt", "cublaslt",
                                                                          "selected"] * 2
    data = json.loads((tmp_path / "m.lfdn.cuda-tactics.json").read_text())
    assert data["pass_checks"]["b2"]["kept"] is False and data["choices"]["b2." + e.layer_keys[0]]["tactic"] == ct.CUBLASLT
    # without cuBLASLt nothing is timed and the per-layer choices stay
    calls.clear()
    final, checks = ct.confirm_against_cublaslt(FakeCudaEngine(), dict(rep.choices), pass_timer=fake_timer,
                                                available=False)
    assert checks == {} and calls == [] and final == rep.choices


# ------------------------------------------------------------------------------------------- GPU (never run yet)
def _layer(K, N, seed=0):
    import torch

    from lfdn_edge.native_core import cuda_pack_linear

    rng = np.random.default_rng(seed)
    w = cuda_pack_linear((rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float16))
    def t(a):
        return torch.from_numpy(a.astype(np.float32)).cuda()

    return w, t(rng.standard_normal(N)), t(1 + 0.1 * rng.standard_normal(K)), t(0.1 * rng.standard_normal(K))


@gpu
@pytest.mark.parametrize("rows", [1, 8, 33, 64, 200])
@pytest.mark.parametrize("K,N,pro", [(720, 1440, "silu"), (1440, 1440, "gn_silu"), (1440, 720, "gn_silu")])
def test_every_applicable_tactic_passes_and_the_wrong_one_is_rejected(rows, K, N, pro):
    import torch

    w, bias, g, b = _layer(K, N)
    x, res = torch.randn(rows, K, device="cuda"), torch.randn(rows, N, device="cuda")
    y = torch.empty(rows, N, device="cuda")
    recs = _C.cuda_tactic_select(x.data_ptr(), y.data_ptr(), w.data_ptr(), rows, K, N, bias.data_ptr(),
                                 res.data_ptr(), g.data_ptr(), b.data_ptr(), pro, 1e-5, 5, ["cuda.test_no_bias"], [],
                                 torch.cuda.current_stream().cuda_stream)
    by = {r["name"]: r for r in recs}
    assert set(by) == set(TABLE)
    assert by["cuda.legacy_tile"]["passed"] and not by["cuda.test_no_bias"]["passed"]
    assert by["cuda.test_no_bias"]["applies"] and not by["cuda.test_no_bias"]["chosen"]
    for r in recs:
        if r["name"] != "cuda.test_no_bias" and r["applies"]:
            assert r["passed"], r
            assert r["worst_ratio"] <= 1.0 and r["median_us"] > 0
    assert by["cuda.stream_r8"]["applies"] == (rows <= 8)
    assert by["cuda.stream_r32"]["applies"] == (rows <= 32)
    assert sum(r["chosen"] for r in recs) == 1


@gpu
def test_split_k_tactics_are_deterministic_and_row_stable():
    import torch

    K = N = 1440
    w, bias, g, b = _layer(K, N, 3)
    x, res = torch.randn(32, K, device="cuda"), torch.randn(32, N, device="cuda")
    s = torch.cuda.current_stream().cuda_stream
    for name in ("cuda.stream_r32", "cuda.mma_splitk_m32", "cuda.mma_m64"):
        outs = []
        for rows in (32, 32, 5):
            nb = _C.cuda_tactic_workspace_bytes(rows, K, N)
            ws = torch.zeros(nb, dtype=torch.uint8, device="cuda")
            o = torch.empty(rows, N, device="cuda")
            _C.cuda_tactic_run(name, x.data_ptr(), o.data_ptr(), w.data_ptr(), rows, K, N, bias.data_ptr(),
                               res.data_ptr(), g.data_ptr(), b.data_ptr(), "gn_silu", 1e-5, ws.data_ptr(), nb, s)
            outs.append(o.cpu())
        assert torch.equal(outs[0], outs[1]), name  # same bits on a rerun
        assert torch.equal(outs[0][:5], outs[2]), name  # a row's result does not depend on the batch


@gpu
def test_engine_selects_refuses_the_wrong_tactic_and_keeps_one_graph_per_bucket():
    import torch

    from lfdn_edge.builder.native_payload import native_spec
    from lfdn_edge import benchmark as bench
    from lfdn_edge.diffusion import Schedule
    from lfdn_edge.native_core import NativeCudaEngine

    layout = (16, 24, 40, 112, 320)
    ck = bench.paper_checkpoint(seed=1, stage_dims=layout, width=192, depth=2, emb_dim=96)
    spec = native_spec(ck.build_model("ema"), Schedule(), ck.score_config, ck.layout, "fp16")
    eng = NativeCudaEngine(spec, 64, "cuda")
    e = eng.engine
    assert e.buckets == [1, 8, 64]
    recs = e.select_tactics(8, ["cuda.test_no_bias"], 3)
    assert {r["key"] for r in recs} == set(e.layer_keys)
    assert not any(r["chosen"] and r["name"] == "cuda.test_no_bias" for r in recs)
    with pytest.raises(ValueError, match="test_no_bias"):
        e.set_tactic(e.layer_keys[0], 8, "cuda.test_no_bias")
    assert e.tactic(e.layer_keys[0], 8) != "cuda.test_no_bias"
    z = torch.from_numpy(bench.standardised_inputs(64, layout, seed=2)).cuda()
    full = eng.score(z)[0].cpu().numpy()
    for rows in (5, 6, 7, 8):  # one bucket (8): one graph for all of them
        a = eng.score(z[:rows])[0].cpu().numpy()
        np.testing.assert_allclose(a, full[:rows], rtol=2e-2)
    assert e.graphs == 2  # buckets 64 and 8


@gpu
def test_real_whole_pass_check_against_cublaslt_on_the_device(tmp_path):
    """On a GPU with cuBLASLt: the engine load times whole passes of each bucket against cuda.cublaslt and
    keeps the faster set, so the chosen pass is never slower than the cuBLASLt pass (as measured then)."""
    from lfdn_edge.builder.native_payload import native_spec
    from lfdn_edge import benchmark as bench
    from lfdn_edge.diffusion import Schedule
    from lfdn_edge.native_core import NativeCudaEngine, load_native

    if not load_native().cublaslt_available():
        pytest.skip("cuBLASLt not loadable here: " + str(load_native().cublaslt_info()))
    layout = (16, 24, 40, 112, 320)
    ck = bench.paper_checkpoint(seed=1, stage_dims=layout, width=192, depth=2, emb_dim=96)
    spec = native_spec(ck.build_model("ema"), Schedule(), ck.score_config, ck.layout, "fp16")
    eng = NativeCudaEngine(spec, 64, "cuda")
    rep = ct.configure_cuda_engine(eng.engine, tmp_path / "m.lfdn", progress=False, scorer=eng)
    for b in eng.engine.buckets:
        c = rep.pass_checks.get(f"b{b}")
        if c is None:  # cuBLASLt already chosen in every layer where it applies
            continue
        assert c["selected_s"] > 0 and c["cublaslt_s"] > 0
        assert c["kept"] == (c["selected_s"] <= c["cublaslt_s"])
        for k in eng.engine.layer_keys:
            assert eng.engine.tactic(k, b) == rep.choices[ct.slot(k, b)]
        in_bucket = [rep.choices[ct.slot(k, b)] for k in eng.engine.layer_keys]
        if not c["kept"]:  # cuBLASLt passes were faster: it runs wherever it applies
            assert ct.CUBLASLT in in_bucket
