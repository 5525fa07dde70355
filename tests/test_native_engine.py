"""The native engine: whole scoring passes against the PyTorch reference, the artifact round trip, the
backend behind lfdn_edge.Scorer, argument checks, and tools/bench.py.

Tolerances: FP32 weights give the PyTorch reference's scores within 1e-4 relative (mse) and 1e-5 absolute
(cosines; mfsim is their mean); FP16-stored weights (FP32 arithmetic) within 2e-3 relative on mse and 2e-3
absolute on the cosines for these random models (docs/NATIVE.md lists what the paper-size model gives).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lfdn_edge.diffusion import Schedule
from lfdn_edge.artifact.file import EngineArtifact, EngineError, read_engine, write_engine
from lfdn_edge.artifact.header import common_header
from lfdn_edge.artifact.native_layout import pack_spec, unpack_spec
from lfdn_edge.builder.native_payload import build_native_artifact, native_spec
from lfdn_edge.reference import ScoreConfig, score_terms

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = (16, 24, 40, 112, 320)


BENCH_SCRIPT = ROOT / "tools" / "bench.py"


def _bench_command() -> list[str]:
    """How to run the benchmark CLI: tools/bench.py where it exists, else the package module."""
    if BENCH_SCRIPT.is_file():
        return [sys.executable, str(BENCH_SCRIPT)]
    return [sys.executable, "-m", "lfdn_edge.cli.bench"]


def _bench_module():
    """The benchmark's logic (lfdn_edge.benchmark: paper_checkpoint, standardised_inputs, best_probe, ...)."""
    return importlib.import_module("lfdn_edge.benchmark")


@pytest.fixture(scope="module")
def bench():
    return _bench_module()


@pytest.fixture(scope="module")
def ckpt(bench):
    """A random LFDN (every Linear non-zero, GroupNorm affine perturbed) as an in-memory checkpoint."""
    ck = bench.paper_checkpoint(seed=1, stage_dims=LAYOUT, width=192, depth=3, emb_dim=96)
    ck.data["score"] = ScoreConfig(t=5, steps=3, eta=1.0, seed=123).to_dict()
    return ck


@pytest.fixture(scope="module")
def z0(bench):
    return bench.standardised_inputs(37, LAYOUT, seed=9)


def _reference(ck, z):
    scorer = ck.reference_scorer()
    zt = torch.from_numpy(z)
    rec = scorer.final.reconstruct(zt)
    t = score_terms(zt, rec, ck.layout, scorer.weights)
    return {k: v.numpy() for k, v in t.items()}, rec.numpy()


@pytest.fixture(scope="module")
def ckpt_authors(bench):
    """The same kind of random LFDN under the authors' scoring convention (chain t..1, DDIM-sample output,
    MFsim without stage 1)."""
    ck = bench.paper_checkpoint(seed=1, stage_dims=LAYOUT, width=192, depth=3, emb_dim=96)
    ck.data["score"] = ScoreConfig(t=4, steps=3, eta=1.0, seed=123, convention="authors").to_dict()
    return ck


def _engine(ck, precision, max_batch=64, threads=0):
    spec = native_spec(ck.build_model("ema"), Schedule(ck.diffusion_config), ck.score_config, ck.layout, precision)
    return _C.CpuEngine(spec, max_batch, threads)


ISAS = list(_C.build_info()["cpu_kernels_usable"])


@pytest.mark.parametrize("isa", ["auto"] + ISAS)
def test_fp32_engine_matches_pytorch_reference(ckpt, z0, isa):
    _C.set_cpu_isa(isa)
    try:
        out = _engine(ckpt, "fp32").score(z0, return_recon=True)
    finally:
        _C.set_cpu_isa("auto")
    ref, rec = _reference(ckpt, z0)
    np.testing.assert_allclose(out["recon"], rec, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["mse"], ref["mse"], rtol=1e-4)
    np.testing.assert_allclose(out["stage_cos"], ref["stage_cos"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["mfsim"], ref["mfsim"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("isa", ["auto"] + ISAS)
def test_fp32_engine_matches_reference_under_the_authors_convention(ckpt_authors, z0, isa):
    """The authors' chain (its coefficients, its DDIM-sample output, its stage weights: all engine data)
    gives the reference's reconstruction and scores; they differ from the project convention's by far more
    than the tolerance (so neither the output row nor the weights can be silently dropped)."""
    _C.set_cpu_isa(isa)
    try:
        out = _engine(ckpt_authors, "fp32").score(z0, return_recon=True)
    finally:
        _C.set_cpu_isa("auto")
    ref, rec = _reference(ckpt_authors, z0)
    np.testing.assert_allclose(out["recon"], rec, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["mse"], ref["mse"], rtol=1e-4)
    np.testing.assert_allclose(out["stage_cos"], ref["stage_cos"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["mfsim"], ref["mfsim"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["mfsim"], -ref["stage_cos"][:, 1:].mean(axis=1), rtol=0, atol=1e-5)
    spec = native_spec(ckpt_authors.build_model("ema"), Schedule(), ckpt_authors.score_config, ckpt_authors.layout,
                       "fp32")
    assert spec["coef"].shape == (3, 5) and spec["stage_weights"][0] == 0.0
    # the last x0 prediction (dropping the output row) and uniform weights give other numbers
    legacy = _C.CpuEngine({**spec, "coef": spec["coef"][:-1], "stage_weights": None}, 64, 0).score(z0)
    assert np.abs(legacy["mse"] - ref["mse"]).max() > 1e-3
    assert np.abs(legacy["mfsim"] - ref["mfsim"]).max() > 1e-3


def test_engine_spec_without_output_row_or_weights_reads_as_before(ckpt, z0):
    """Specs of engines built before the scoring conventions (coef with steps - 1 rows, no stage_weights)
    score as the project convention: the last x0 prediction and MFsim over all stages."""
    spec = native_spec(ckpt.build_model("ema"), Schedule(ckpt.diffusion_config), ckpt.score_config, ckpt.layout,
                       "fp32")
    assert spec["coef"].shape == (3, 5) and tuple(spec["coef"][-1, 2:]) == (1.0, 0.0, 0.0)
    new = _C.CpuEngine(spec, 64, 0).score(z0, return_recon=True)
    old_spec = {k: v for k, v in spec.items() if k != "stage_weights"}
    old_spec["coef"] = spec["coef"][:-1]
    old = _C.CpuEngine(old_spec, 64, 0).score(z0, return_recon=True)
    np.testing.assert_array_equal(old["recon"], new["recon"])
    np.testing.assert_array_equal(old["stage_cos"], new["stage_cos"])
    np.testing.assert_allclose(old["mfsim"], new["mfsim"], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="invalid size"):  # 3 weights, 5 stages
        _C.CpuEngine({**spec, "stage_weights": np.full(3, 1 / 3, np.float32)}, 4)
    with pytest.raises(ValueError, match="invalid argument"):
        _C.CpuEngine({**spec, "stage_weights": np.full(5, -0.2, np.float32)}, 4)
    bad = spec["coef"].copy()
    bad[-1, 4] = 0.5  # the output row must be deterministic
    with pytest.raises(Exception):
        _C.CpuEngine({**spec, "coef": bad}, 4)


@pytest.mark.parametrize("isa", ISAS)
def test_fp16_weights_engine_within_stated_tolerance(ckpt, z0, isa):
    _C.set_cpu_isa(isa)
    try:
        out = _engine(ckpt, "fp16").score(z0)
    finally:
        _C.set_cpu_isa("auto")
    ref, _ = _reference(ckpt, z0)
    np.testing.assert_allclose(out["mse"], ref["mse"], rtol=2e-3)
    np.testing.assert_allclose(out["stage_cos"], ref["stage_cos"], rtol=0, atol=2e-3)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_scores_do_not_depend_on_batch_or_threads(ckpt, z0, isa, precision):
    _C.set_cpu_isa(isa)
    try:
        eng1, eng2 = _engine(ckpt, precision, threads=1), _engine(ckpt, precision, threads=2)
        full = eng2.score(z0)
        for a, b in ((0, 1), (3, 10), (10, 37), (1, 14)):
            part = eng1.score(z0[a:b])
            for k in ("mse", "mfsim", "stage_cos"):
                assert np.array_equal(part[k], full[k][a:b]), (k, a, b)
    finally:
        _C.set_cpu_isa("auto")


def test_simd_whole_pass_agrees_with_the_scalar_pass(ckpt, z0):
    """The whole scoring pass on each SIMD table against the portable table (FP32 weights): mse within 1e-5
    relative, cosines and mfsim within 2e-6 absolute (FMA contraction, summation order of the GroupNorm moments
    and the vector exp only; measured on the paper-size model: 2.2e-7 and 1.6e-6)."""
    outs = {}
    try:
        for isa in ISAS:
            _C.set_cpu_isa(isa)
            outs[isa] = _engine(ckpt, "fp32").score(z0)
    finally:
        _C.set_cpu_isa("auto")
    for isa in ISAS:
        np.testing.assert_allclose(outs[isa]["mse"], outs["scalar"]["mse"], rtol=1e-5)
        np.testing.assert_allclose(outs[isa]["stage_cos"], outs["scalar"]["stage_cos"], rtol=0, atol=2e-6)
        np.testing.assert_allclose(outs[isa]["mfsim"], outs["scalar"]["mfsim"], rtol=0, atol=2e-6)


def test_engine_is_safe_to_share_between_python_threads(ckpt, z0):
    eng = _engine(ckpt, "fp16")
    want = eng.score(z0)["mse"]
    got, errors = [], []

    def work():
        try:
            for _ in range(3):
                got.append(eng.score(z0)["mse"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 9 and all(np.array_equal(g, want) for g in got)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_engine_works_in_a_forked_child(ckpt, z0):
    """A child forked after the threads started (DataLoader workers, multiprocessing) gets its own team."""
    import os

    eng = _engine(ckpt, "fp32")
    want = eng.score(z0)["mse"]
    r, w = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns about fork() in a multi-threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: score, report, exit without running pytest's teardown
        try:
            ok = np.array_equal(eng.score(z0)["mse"], want)
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1"


def test_engine_rejects_bad_inputs(ckpt, z0):
    eng = _engine(ckpt, "fp32", max_batch=8)
    with pytest.raises(ValueError, match="above the engine's workspace"):
        eng.score(z0[:9])
    with pytest.raises(ValueError, match=r"shape \(rows, 512\)"):
        eng.score(z0[:, :100])
    with pytest.raises(ValueError, match="empty batch"):
        eng.score(z0[:0])
    with pytest.raises(TypeError, match="floating point"):
        eng.score(np.zeros((2, 512), np.int64))
    with pytest.raises(TypeError, match="required"):
        eng.score(None)
    assert eng.score(z0[:8].astype(np.float64))["mse"].shape == (8,)  # float64 is converted
    with pytest.raises(ValueError, match="max_batch"):
        _C.CpuEngine({}, 0)


def test_engine_spec_is_validated(ckpt):
    spec = native_spec(ckpt.build_model("ema"), Schedule(), ckpt.score_config, ckpt.layout, "fp32")
    with pytest.raises(KeyError, match="lacks 'inp_w'"):
        _C.CpuEngine({k: v for k, v in spec.items() if k != "inp_w"}, 4)
    with pytest.raises(ValueError, match=r"fc1_w\[1\] must have shape"):
        _C.CpuEngine({**spec, "fc1_w": [spec["fc1_w"][0], spec["fc1_w"][1][:, :5]] + spec["fc1_w"][2:]}, 4)
    with pytest.raises(TypeError, match="spec precision is fp16"):
        _C.CpuEngine({**spec, "precision": "fp16"}, 4)
    with pytest.raises(ValueError, match="entries, depth is 3"):
        _C.CpuEngine({**spec, "gn1_g": spec["gn1_g"][:2]}, 4)
    with pytest.raises(ValueError, match="invalid argument"):
        _C.CpuEngine({**spec, "stage_offsets": [0, 10, 600]}, 4)
    # a field or argument of the wrong type: a TypeError naming it (not pybind11's RuntimeError "Unable to cast")
    for key, bad, expect in (("in_dim", "512", "engine spec 'in_dim' must be an int, got str"),
                             ("precision", 16, "engine spec 'precision' must be a str, got int"),
                             ("stage_offsets", "0,10", "engine spec 'stage_offsets' must be a sequence of int"),
                             ("seed", -1, "engine spec 'seed' must be a non-negative int, got int")):
        with pytest.raises(TypeError, match=expect):
            _C.CpuEngine({**spec, key: bad}, 4)
    eng = _C.CpuEngine(spec, 4)
    with pytest.raises(TypeError, match="tactic name must be a str or None, got int"):
        eng.set_tactic(0, 0, 5)


# ------------------------------------------------------------------------------------------ artifact
def _artifact(ck, precision, batch=(1, 16, 64)):
    extras, payload = build_native_artifact(ck, precision, batch, False)
    return {**common_header(ck, "native", precision, batch, False), **extras}, payload


def test_pack_unpack_round_trip(ckpt):
    spec = native_spec(ckpt.build_model("ema"), Schedule(), ckpt.score_config, ckpt.layout, "fp16")
    meta, payload = pack_spec(spec)
    back = unpack_spec(json.loads(json.dumps(meta)), payload)
    assert back["fc1_w"][2].dtype == np.float16 and back["fc1_bias"].dtype == np.float32
    for k, v in spec.items():
        if isinstance(v, list) and v and isinstance(v[0], np.ndarray):
            assert all(np.array_equal(a, b) for a, b in zip(v, back[k])), k
        elif isinstance(v, np.ndarray):
            assert np.array_equal(v, back[k]), k
        else:
            assert v == back[k], k
    assert all(t["offset"] % 64 == 0 for t in meta["tensors"])
    with pytest.raises(EngineError, match="format"):
        unpack_spec({**meta, "format": 99}, payload)
    with pytest.raises(EngineError, match="outside the payload"):
        unpack_spec(meta, payload[:-100])


def test_native_artifact_through_file_and_scorer(ckpt, z0, tmp_path):
    from lfdn_edge.runtime.backends.native_backend import NativeBackend

    header, payload = _artifact(ckpt, "fp32")
    path = write_engine(tmp_path / "m.native.engine", header, payload)
    art = read_engine(path)
    out = NativeBackend(art, "cpu").run(z0)
    ref, _ = _reference(ckpt, z0)
    np.testing.assert_allclose(out.mse, ref["mse"], rtol=1e-4)
    np.testing.assert_allclose(out.mfsim, ref["mfsim"], atol=1e-5)
    # the Scorer (lfdn_edge.runtime.scorer) picks the native backend from the payload kind
    scorer = pytest.importorskip("lfdn_edge.runtime.scorer").Scorer(path)
    assert scorer.backend_name == "native"
    np.testing.assert_allclose(scorer.explain(z0)["mse"], ref["mse"], rtol=1e-4)
    # torch input works too (converted on the CPU)
    assert np.allclose(NativeBackend(art).run(torch.from_numpy(z0)).mse, out.mse)


def test_native_backend_errors_are_clear(ckpt, monkeypatch):
    from lfdn_edge.runtime.backends.native_backend import NativeBackend

    header, payload = _artifact(ckpt, "fp32")
    with pytest.raises(ValueError, match="do not include the backbone"):
        build_native_artifact(ckpt, "fp32", (1, 1, 4), True)
    with pytest.raises(ValueError, match="precision"):
        build_native_artifact(ckpt, "int4", (1, 1, 4), False)
    with pytest.raises(EngineError, match="runs native payloads"):
        NativeBackend(EngineArtifact({**header, "backend": "onnx"}, payload))
    with pytest.raises(ValueError, match="device must be"):
        NativeBackend(EngineArtifact(header, payload), "tpu")
    monkeypatch.setenv("LFDN_EDGE_NUM_THREADS", "lots")
    with pytest.raises(ValueError, match="LFDN_EDGE_NUM_THREADS"):
        NativeBackend(EngineArtifact(header, payload))
    from lfdn_edge.native_core import cuda_usable

    usable, why = cuda_usable()
    if not usable:  # CPU-only build, CPU torch or no GPU: a RuntimeError saying which
        monkeypatch.delenv("LFDN_EDGE_NUM_THREADS")
        with pytest.raises(RuntimeError, match="native CUDA kernels unavailable: " + why.split(" (")[0]):
            NativeBackend(EngineArtifact(header, payload), "cuda")


def test_native_backend_runs_batches_up_to_the_header_max(ckpt, z0):
    from lfdn_edge.runtime.backends.native_backend import NativeBackend

    header, payload = _artifact(ckpt, "fp16", batch=(1, 4, 16))
    be = NativeBackend(EngineArtifact(header, payload))
    assert be.run(z0[:16]).mse.shape == (16,)
    with pytest.raises(ValueError, match="max batch 16"):
        be.run(z0[:17])


@pytest.mark.data
def test_trained_checkpoint_scores_match_reference(real_features, tmp_path):
    """A checkpoint trained on real fmnist-ood features: native FP32 scores = PyTorch scores within 1e-4."""
    from lfdn_edge.model import LFDNConfig
    from lfdn_edge.train import TrainConfig, train_lfdn

    ck = train_lfdn(real_features.train, real_features.layout, real_features.feature_config, tmp_path / "c.pt",
                    LFDNConfig(in_dim=real_features.layout.dim, width=128, depth=2, emb_dim=64),
                    TrainConfig(epochs=3, batch_size=128, lr=1e-3, seed=3, early_epoch=1), progress=False)
    z = np.concatenate([real_features.test[:40], next(iter(real_features.ood.values()))[:40]]).astype(np.float32)
    ref = ck.reference_scorer().scores(z)
    for precision, rtol, atol in (("fp32", 1e-4, 1e-5), ("fp16", 5e-3, 1e-3)):
        out = _engine(ck, precision, max_batch=len(z)).score(z)
        np.testing.assert_allclose(out["mse"], ref["mse"], rtol=rtol)
        np.testing.assert_allclose(out["mfsim"], ref["mfsim"], rtol=0, atol=atol)
        if precision == "fp32":  # trained model, real data: |mfsim| is far from 0, relative error is meaningful
            np.testing.assert_allclose(out["mfsim"], ref["mfsim"], rtol=1e-4)


# ------------------------------------------------------------------------------------------ CUDA engine
def _cuda_usable():
    from lfdn_edge.native_core import cuda_usable

    return cuda_usable()


@pytest.mark.skipif(not _cuda_usable()[0], reason=f"CUDA engine not runnable here: {_cuda_usable()[1]}")
def test_cuda_engine_matches_reference(ckpt, z0):
    from lfdn_edge.native_core import NativeCudaEngine

    spec = native_spec(ckpt.build_model("ema"), Schedule(), ckpt.score_config, ckpt.layout, "fp16")
    eng = NativeCudaEngine(spec, 64, "cuda")
    ref, _ = _reference(ckpt, z0)
    for _ in range(2):  # the second call replays the captured graph
        mse, mfsim, cos = eng.score(torch.from_numpy(z0).cuda())
        np.testing.assert_allclose(mse.cpu().numpy(), ref["mse"], rtol=2e-2)
        np.testing.assert_allclose(cos.cpu().numpy(), ref["stage_cos"], atol=1e-2)
    assert eng.engine.graphs == 1
    with pytest.raises(ValueError, match="above the engine's workspace"):
        eng.score(torch.zeros(65, 512))


# ------------------------------------------------------------------------------------------ bench tool
def test_bench_tool_report_is_consistent_and_within_parity_tolerances(bench, tmp_path):
    """tools/bench.py's JSON: one result per (variant, batch), throughput consistent with the timings it
    reports, ratios consistent with the throughputs, and parity numbers within the stated tolerances.

    With --min-time 0, --min-reps 2 and --rounds 1 exactly two calls are timed, so p50 is their mean and
    items_per_s = batch * reps / total time = 1000 * batch / p50_ms exactly (up to float rounding);
    p99 lies between the mean and the slower call, below 2 * p50."""
    ck = bench.paper_checkpoint(seed=2, stage_dims=LAYOUT, width=64, depth=2, emb_dim=32)
    path = ck.save(tmp_path / "small.pt")
    out = tmp_path / "bench.json"
    base = _bench_command()
    cmd = base + ["--ckpt", str(path), "--backends", "torch,native", "--batch", "1,5", "--min-time", "0",
                  "--min-reps", "2", "--rounds", "1", "--warmup", "1", "--parity-batch", "6",
                  "--native-tactics", "auto", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(out.read_text())
    assert rep["device"] == "cpu"
    variants = ("torch", "native-fp32", "native-fp16")
    got = sorted((r["backend"], r["batch"]) for r in rep["results"])
    assert got == sorted((b, n) for b in variants for n in (1, 5))  # each exactly once
    by = {(r["backend"], r["batch"]): r for r in rep["results"]}
    for (name, n), r in by.items():
        assert r["reps"] == 2, r
        assert 0 < r["p50_ms"] <= r["p99_ms"] < 2 * r["p50_ms"], r
        assert r["items_per_s"] == pytest.approx(1000.0 * n / r["p50_ms"], rel=1e-9), r
    for name in variants[1:]:
        for n in (1, 5):
            want = round(by[(name, n)]["items_per_s"] / by[("torch", n)]["items_per_s"], 3)
            assert rep["ratios_vs_torch"][name][str(n)] == pytest.approx(want, abs=1e-3), (name, n)
    par = rep["parity_vs_torch"]
    assert set(par) == {"native-fp32", "native-fp16"}
    # the module docstring's tolerances: FP32 1e-4 relative on mse, 1e-5 absolute on cosines and mfsim;
    # FP16-stored weights 2e-3 relative on mse, 2e-3 absolute on the cosines
    f32, f16 = par["native-fp32"], par["native-fp16"]
    assert 0 <= f32["mse_max_rel_err"] < 1e-4 and 0 <= f32["stage_cos_max_abs_err"] < 1e-5, f32
    assert 0 <= f32["mfsim_max_abs_err"] < 1e-5, f32
    assert 0 <= f16["mse_max_rel_err"] < 2e-3 and 0 <= f16["stage_cos_max_abs_err"] < 2e-3, f16
    # the FP16 variant really runs FP16-rounded weights: its error is above the FP32 variant's
    assert f16["mse_max_rel_err"] > f32["mse_max_rel_err"] and f16["stage_cos_max_abs_err"] > f32["stage_cos_max_abs_err"]
    assert rep["settings"]["batch"] == [1, 5] and rep["settings"]["parity_batch"] == 6
    assert rep["model"]["width"] == 64 and rep["model"]["in_dim"] == 512 and rep["model"]["depth"] == 2
    assert "commit" in rep and "machine" in rep
    # roofline fields: the active kernel table, the machine probe, and per result the fraction of the binding
    # limit recomputed from the JSON's own numbers (Linear weights x steps x bytes per weight; 2 flops per MAC)
    assert rep["cpu_isa"] == rep["machine"]["native_build"]["cpu_kernels_active"]
    roof = rep["roofline"]
    assert roof["read_bandwidth_gbs"] > 0.1 and roof["fma_peak_gflops"] > 0.1, roof
    assert roof["fma_isa"] in rep["machine"]["native_build"]["cpu_kernels_usable"]
    # probed before and after the timing; each limit is the higher of the two readings
    assert len(roof["probes"]) == 2
    for k in ("read_bandwidth_gbs", "fma_peak_gflops"):
        assert roof[k] == max(p[k] for p in roof["probes"]), (k, roof)
    assert roof["linear_weights"] == 512 * 64 + 2 * 2 * 64 * 64 + 64 * 512 and roof["steps"] == 3
    for (name, n), r in by.items():
        bpp = 2 if name == "native-fp16" else 4
        nbytes, flops = roof["linear_weights"] * 3 * bpp, 2.0 * roof["linear_weights"] * 3 * n
        t_bw, t_fl = nbytes / (roof["read_bandwidth_gbs"] * 1e9), flops / (roof["fma_peak_gflops"] * 1e9)
        calls = r["items_per_s"] / n
        assert r["bound"] == ("bandwidth" if t_bw >= t_fl else "compute"), r
        assert r["fraction_of_bound"] == pytest.approx(max(t_bw, t_fl) * calls, rel=2e-3, abs=1e-3), r
        assert r["achieved_gbs"] == pytest.approx(nbytes * calls / 1e9, rel=1e-2, abs=0.01), r
        assert roof["fraction_of_bound"][name][str(n)] == r["fraction_of_bound"]
    assert "ratios_vs_onnxruntime" not in rep  # onnxruntime did not run
    bad = subprocess.run(base + ["--batch", "0"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "batch sizes must be >= 1" in bad.stderr


@pytest.mark.parametrize("field,value", [("in_dim", 12.5), ("precision", 3), ("stage_offsets", ["a"]),
                                         ("q_a", "x"), ("depth", True)])
def test_malformed_native_scalars_give_an_engine_error(ckpt, field, value):
    """A forged header (valid checksum, wrong JSON types) is refused by the layout reader with EngineError,
    not by an unclear pybind11 cast error or an AttributeError (found by the reliability fuzzing)."""
    import copy

    extras, payload = build_native_artifact(ckpt, "fp32", (1, 4, 8), False)
    meta = copy.deepcopy(extras["native"])
    unpack_spec(meta, payload)  # the intact header reads
    meta[field] = value
    with pytest.raises(EngineError, match="wrong type"):
        unpack_spec(meta, payload)
    meta = copy.deepcopy(extras["native"])
    meta["tensors"][0]["name"] = 5
    with pytest.raises(EngineError, match="malformed native tensor entry"):
        unpack_spec(meta, payload)


def test_bench_keeps_the_higher_reading_of_each_machine_limit():
    """A probe disturbed by other load reads low (117 vs 214 GFLOPS seen on a shared VM): the roofline uses the
    higher reading of the two probes per limit, so a backend cannot be reported above 100 % of the peak."""
    from lfdn_edge.benchmark import best_probe

    before = {"read_bandwidth_gbs": 30.0, "fma_peak_gflops": 117.0, "bf16_peak_gflops": 420.0, "threads": 2}
    after = {"read_bandwidth_gbs": 28.0, "fma_peak_gflops": 214.0, "bf16_peak_gflops": None, "threads": 2}
    got = best_probe(before, after)
    assert (got["read_bandwidth_gbs"], got["fma_peak_gflops"], got["bf16_peak_gflops"]) == (30.0, 214.0, 420.0)
    assert got["threads"] == 2 and got["probes"][0]["fma_peak_gflops"] == 117.0
    assert got["probes"][1]["fma_peak_gflops"] == 214.0
