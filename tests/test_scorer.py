"""Scorer and build_engine: backends, artifacts (round trip, corrupted, foreign, mismatched), input validation,
batch ranges, thresholds, explain(), the tools/build_engine.py CLI, and TensorRT device-compatibility checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lfdn_edge
from lfdn_edge import Scorer
from lfdn_edge.artifact.file import EngineArtifact, EngineError, read_engine, write_engine
from lfdn_edge.builder.dispatch import build_artifact, build_engine, default_output
from lfdn_edge.probes import native_usable
from lfdn_edge.features import FeatureConfig, FeatureLayout
from lfdn_edge.model import LFDNConfig
from lfdn_edge.runtime import backends
from lfdn_edge.runtime.backends.tensorrt_backend import check_device_compat
from lfdn_edge.train import TrainConfig, train_lfdn

pytest.importorskip("onnxruntime", reason="Scorer tests need onnxruntime (pip install onnxruntime)")
pytest.importorskip("onnx", reason="Scorer tests need onnx (pip install onnx)")

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = FeatureLayout((16, 24, 40, 112, 320))


def _train(path, z, cal=None, **model):
    cfg = LFDNConfig(in_dim=512, **(model or dict(width=64, depth=2, emb_dim=32)))
    return train_lfdn(z, LAYOUT, FeatureConfig(backbone="efficientnet-lite0", input_size=64), path, cfg,
                      TrainConfig(epochs=2, batch_size=64, early_epoch=1), cal_features=cal, progress=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("scorer")


@pytest.fixture(scope="module")
def ckpt(work):
    z = np.random.default_rng(2).standard_normal((192, 512)).astype(np.float32)
    return _train(work / "ckpt.pt", z[:160], z[160:])


@pytest.fixture(scope="module")
def engine(ckpt, work):
    return build_engine(ckpt.path, backend="onnx", batch=(1, 8, 16), out=work / "f32.engine")


@pytest.fixture(scope="module")
def feats():
    return (np.random.default_rng(3).standard_normal((40, 512)) * 0.7).astype(np.float32)


def run_tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "build_engine.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------------------------------------- scoring
def test_onnx_engine_scores_like_torch_and_the_reference(ckpt, engine, feats):
    s = Scorer(engine)
    assert s.backend_name == "onnxruntime" and s.device == "cpu"
    a = s.score(feats)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (40,)
    t = Scorer(ckpt.path)  # a checkpoint path: the PyTorch graph
    assert t.backend_name == "torch"
    b = t.score(feats)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a, ckpt.reference_scorer().scores(feats)["mfsim"], rtol=1e-4, atol=1e-6)
    # torch in, torch out (same device), same numbers
    out = s.score(torch.from_numpy(feats))
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), a, rtol=1e-6)
    out_t = t.score(torch.from_numpy(feats))
    assert isinstance(out_t, torch.Tensor)
    # lists work too (numpy out); float64 is converted to float32
    np.testing.assert_allclose(s.score(feats[:3].astype(np.float64).tolist()), a[:3], rtol=1e-6)
    mem = Scorer(build_artifact(ckpt, "onnx", "fp32", (1, 8, 16)))  # an in-memory engine, no file
    assert mem.backend_name == "onnxruntime"
    np.testing.assert_allclose(mem.score(feats), a, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build of torch and a GPU")
def test_torch_backend_on_cuda_returns_tensors_on_the_input_device(ckpt, feats):
    s = Scorer(ckpt.path, device="cuda")
    out = s.score(torch.from_numpy(feats).cuda())
    assert out.is_cuda
    np.testing.assert_allclose(out.cpu().numpy(), Scorer(ckpt.path).score(feats), rtol=1e-4, atol=1e-6)


def test_build_engine_without_out_writes_the_default_name_next_to_the_checkpoint(ckpt, engine, feats):
    """build_engine with no ``out``: <ckpt dir>/<ckpt stem>.<backend>.<precision>[.image].engine, a file that
    exists, reads back as that engine and scores like the same engine written elsewhere."""
    expected = Path(ckpt.path).parent / "ckpt.onnx.fp32.engine"
    assert not expected.exists()
    path = build_engine(ckpt.path, backend="onnx", batch=(1, 8, 16))
    assert Path(path) == expected and expected.is_file()
    h = read_engine(path).header
    assert h["backend"] == "onnx" and h["precision"] == "fp32" and h["includes_backbone"] is False
    np.testing.assert_allclose(Scorer(path).score(feats), Scorer(engine).score(feats), rtol=1e-6)
    image = build_engine(ckpt.path, backend="onnx", batch=(1, 2, 4), include_backbone=True)
    assert Path(image) == Path(ckpt.path).parent / "ckpt.onnx.fp32.image.engine" and Path(image).is_file()
    assert read_engine(image).header["includes_backbone"] is True
    assert default_output(ckpt.path, "tensorrt", "fp16", True).name == "ckpt.tensorrt.fp16.image.engine"
    expected.unlink()
    Path(image).unlink()


def test_header_round_trip(ckpt, engine, tmp_path):
    h = read_engine(engine).header
    assert h["backend"] == "onnx" and h["precision"] == "fp32" and h["onnx_opset"] == 17
    assert h["batch"] == {"min": 1, "opt": 8, "max": 16}
    assert h["layout"] == {"stage_dims": [16, 24, 40, 112, 320]}
    assert h["score"] == ckpt.score_config.to_dict() and h["ddim_levels"] == [3, 2, 0]
    assert h["score_type"] == "mfsim" and h["threshold"] == pytest.approx(ckpt.threshold("mfsim"))
    assert h["thresholds"]["mse"] == pytest.approx(ckpt.threshold("mse"))
    assert h["input"] == {"name": "features", "dtype": "float32", "shape": [-1, 512]}
    assert h["outputs"] == ["score", "mse", "mfsim", "stage_cos"]
    assert h["includes_backbone"] is False and h["lfdn_edge_version"] == lfdn_edge.__version__
    # in-memory artifact -> file -> artifact: identical header entries and payload
    art = build_artifact(ckpt, "torch", "fp32", (2, 4, 8))
    back = read_engine(write_engine(tmp_path / "t.engine", art.header, art.payload))
    assert back.payload == art.payload
    assert {k: back.header[k] for k in art.header} == art.header


def test_corrupted_truncated_and_foreign_files(engine, tmp_path):
    data = Path(engine).read_bytes()
    cases = {
        "truncated": (data[: len(data) // 2], "truncated"),
        "corrupted": (data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:], "corrupted"),
        "foreign": (b"\x89PNG\r\n\x1a\n" + bytes(100), "not an lfdn-edge engine"),
        "empty": (b"", "not an lfdn-edge engine"),
    }
    for name, (blob, msg) in cases.items():
        p = tmp_path / f"{name}.engine"
        p.write_bytes(blob)
        with pytest.raises(EngineError, match=msg):
            Scorer(p)
    zip_file = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, zip_file)
    with pytest.raises(EngineError, match="neither an lfdn-edge engine nor an lfdn-edge checkpoint"):
        Scorer(zip_file)
    with pytest.raises(FileNotFoundError):
        Scorer(tmp_path / "missing.engine")
    with pytest.raises(TypeError):
        Scorer(12)


def test_mismatched_payloads_and_backends(engine, ckpt, tmp_path):
    h = read_engine(engine).header
    p = write_engine(tmp_path / "alien.engine", dict(h, backend="coreml"), b"x")
    with pytest.raises(EngineError, match="unknown engine payload"):
        Scorer(p)
    p = write_engine(tmp_path / "bad-onnx.engine", h, b"not an onnx model")
    with pytest.raises(EngineError, match="onnxruntime cannot load"):
        Scorer(p)
    p = write_engine(tmp_path / "bad-torch.engine", dict(h, backend="torch"), b"not a checkpoint")
    with pytest.raises(EngineError, match="torch payload"):
        Scorer(p)
    p = write_engine(tmp_path / "bad-batch.engine", dict(h, batch={"min": 0, "opt": 1, "max": 2}), b"x")
    with pytest.raises(EngineError, match="malformed engine header"):
        Scorer(p)
    with pytest.raises(ValueError, match="only the 'onnxruntime' backend"):
        Scorer(engine, backend="torch")
    with pytest.raises(ValueError, match="unknown backend"):
        Scorer(engine, backend="coreml")
    with pytest.raises(ValueError, match="batch_policy"):
        Scorer(engine, batch_policy="pad")


def test_missing_backend_module_is_a_clear_import_error(monkeypatch, engine):
    monkeypatch.setitem(backends.BACKENDS, "native", "lfdn_edge.runtime.backends.no_such_module:NativeBackend")
    with pytest.raises(ImportError, match="not part of this installation"):
        backends.load_backend("native")
    h = dict(read_engine(engine).header, backend="native")
    with pytest.raises(ImportError, match="'native' backend"):
        Scorer(EngineArtifact(h, b"", None))


# ---------------------------------------------------------------------------------------------- validation
def test_feature_input_validation(engine, feats):
    s = Scorer(engine)
    bad = feats[:4].copy()
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf .*rows \[2\]"):
        s.score(bad)
    bad[2, 5] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        s.score(bad)
    with pytest.raises(ValueError, match="NaN or Inf"):
        s.score(np.full((1, 512), 1e300))  # overflows float32
    with pytest.raises(ValueError, match="NaN or Inf"):
        s.score(torch.from_numpy(bad))
    with pytest.raises(ValueError, match="empty batch"):
        s.score(np.zeros((0, 512), np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, 512\)"):
        s.score(feats[:, :511])
    with pytest.raises(ValueError, match=r"x\[None\]"):
        s.score(feats[0])
    with pytest.raises(TypeError, match="floating point"):
        s.score(np.ones((2, 512), np.int64))
    with pytest.raises(TypeError, match="floating point"):
        s.score(torch.ones(2, 512, dtype=torch.int32))
    np.testing.assert_allclose(s.score(feats.astype(np.float64)), s.score(feats), rtol=1e-7)
    np.testing.assert_allclose(s.score(feats.astype(np.float16)), s.score(feats.astype(np.float16).astype(np.float32)))


def test_image_engine_takes_uint8_frames_of_its_size(ckpt, work):
    path = build_engine(ckpt.path, backend="onnx", batch=(1, 2, 4), include_backbone=True, image_size=(40, 48),
                        out=work / "img.engine")
    s = Scorer(path)
    assert s.includes_backbone and s.input_shape == (-1, 40, 48, 3)
    frames = np.random.default_rng(4).integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)
    a = s.score(frames)
    ref = Scorer.from_checkpoint(ckpt, include_backbone=True, image_size=(40, 48)).score(frames)
    np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        s.score(frames.astype(np.float32))
    with pytest.raises(ValueError, match="--image-size"):
        s.score(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="--image-size"):
        s.score(np.zeros((2, 3, 40, 48), np.uint8))
    with pytest.raises(ValueError, match="empty batch"):
        s.score(np.zeros((0, 40, 48, 3), np.uint8))


# ---------------------------------------------------------------------------------------------- batch range
def test_batch_range_split_pad_and_strict(ckpt, work, feats):
    path = build_engine(ckpt.path, backend="onnx", batch=(2, 4, 5), out=work / "b.engine")
    s = Scorer(path)
    seen = []
    run = s._backend.run
    s._backend.run = lambda x: (seen.append(len(x)), run(x))[1]
    whole = s.score(feats[:12])
    assert seen == [5, 5, 2]  # chunks of at most max
    one = s.score(feats[:1])
    assert seen[-1] == 2  # padded up to min, padding dropped
    assert one.shape == (1,)
    single = np.concatenate([s.score(feats[i:i + 1]) for i in range(12)])
    np.testing.assert_allclose(whole, single, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(whole, Scorer(ckpt.path).score(feats[:12]), rtol=1e-4, atol=1e-6)
    strict = Scorer(path, batch_policy="strict")
    for n in (1, 6):
        with pytest.raises(ValueError, match=r"outside the engine's batch range \[2, 5\]"):
            strict.score(feats[:n])
    np.testing.assert_allclose(strict.score(feats[:3]), whole[:3], rtol=1e-6)
    torch_chunks = s.score(torch.from_numpy(feats[:11]))
    assert isinstance(torch_chunks, torch.Tensor) and torch_chunks.shape == (11,)


# ---------------------------------------------------------------------------------------------- threshold
def _nested_flags(s, x, thresholds):
    """is_ood at increasing thresholds: each flagged set must contain the next one."""
    flags = [np.asarray(s.is_ood(x, threshold=float(t))) for t in sorted(thresholds)]
    for lo, hi in zip(flags, flags[1:]):
        assert not np.any(hi & ~lo), "raising the threshold flagged an item that a lower one did not"
    return flags


def test_threshold_override_and_explain(ckpt, engine, feats):
    s = Scorer(engine)
    thr = ckpt.threshold("mfsim")
    assert s.threshold == pytest.approx(thr)
    score = s.score(feats)
    # a threshold override changes the flags monotonically: none above every score, all below every score
    grid = np.quantile(score, np.linspace(0, 1, 9))
    flags = _nested_flags(s, feats, [score.min() - 1.0, *grid[1:-1], score.max() + 1.0])
    counts = [int(f.sum()) for f in flags]
    assert counts[0] == len(feats) and counts[-1] == 0, counts
    assert counts == sorted(counts, reverse=True) and len(set(counts)) > 3, counts
    # the flags follow the score: every flagged item scores above every unflagged one
    mid = float(np.median(score))
    at_mid = s.is_ood(feats, threshold=mid)
    assert 0 < at_mid.sum() < len(feats)
    assert score[at_mid].min() > score[~at_mid].max()
    # the stored threshold, the setter and the constructor override give the same flags as the per-call override
    default = s.is_ood(feats)
    assert np.array_equal(default, s.is_ood(feats, threshold=thr))
    s.threshold = mid
    assert np.array_equal(s.is_ood(feats), at_mid)
    assert np.array_equal(Scorer(engine, threshold=mid).is_ood(feats), at_mid)
    with pytest.raises(ValueError, match="finite"):
        s.threshold = float("nan")
    assert Scorer(engine, threshold=mid).threshold == mid
    e = s.explain(feats)
    assert set(e) == {"score", "score_type", "mse", "mfsim", "stage_cos", "stage_dims", "threshold", "is_ood"}
    assert e["stage_cos"].shape == (40, 5) and e["stage_dims"] == (16, 24, 40, 112, 320)
    np.testing.assert_allclose(e["score"], score, rtol=1e-7)
    np.testing.assert_allclose(e["mfsim"], -e["stage_cos"].mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e["mse"], ckpt.reference_scorer().scores(feats)["mse"], rtol=1e-4)
    assert np.array_equal(e["is_ood"], at_mid)  # explain flags like is_ood at the scorer's threshold
    m = Scorer(engine, score_type="mse")
    assert m.threshold == pytest.approx(ckpt.threshold("mse"))
    np.testing.assert_allclose(m.score(feats), e["mse"], rtol=1e-7)
    with pytest.raises(ValueError, match="score_type"):
        Scorer(engine, score_type="lr")


def test_uncalibrated_engine_needs_an_explicit_threshold(work, feats):
    z = np.random.default_rng(6).standard_normal((128, 512)).astype(np.float32)
    ck = _train(work / "uncal.pt", z)
    s = Scorer(build_engine(ck.path, backend="onnx", out=work / "uncal.engine"))
    assert s.threshold is None and read_engine(work / "uncal.engine").header["threshold"] is None
    with pytest.raises(ValueError, match="no calibrated threshold"):
        s.is_ood(feats)
    assert s.explain(feats)["is_ood"] is None
    assert s.is_ood(feats, threshold=0.0).dtype == bool


# ---------------------------------------------------------------------------------------------- TensorRT headers
TRT_HEADER = {"backend": "tensorrt", "trt_flavor": "tensorrt", "tensorrt_version": "10.3.0.30",
              "cuda_version": "12.6", "compute_capability": "8.7"}
HERE = {"trt_flavor": "tensorrt", "tensorrt_version": "10.3.0.30", "cuda_version": "12.6", "compute_capability": "8.7"}


def test_tensorrt_header_device_compatibility():
    check_device_compat(TRT_HEADER, HERE)
    check_device_compat(TRT_HEADER, dict(HERE, cuda_version="12.2"))  # same CUDA major
    check_device_compat(dict(TRT_HEADER, cuda_version=None), HERE)
    mismatches = {
        "TensorRT version 10.3.0.30 != 10.7.0.23": dict(HERE, tensorrt_version="10.7.0.23"),
        "compute capability 8.6 != 8.7": dict(HERE, compute_capability="8.6"),
        "CUDA 12.6 != 13.0": dict(HERE, cuda_version="13.0"),
        "built with tensorrt, this machine runs tensorrt-rtx": dict(HERE, trt_flavor="tensorrt-rtx"),
    }
    for msg, here in mismatches.items():
        with pytest.raises(EngineError, match="Rebuild on this device") as info:
            check_device_compat(TRT_HEADER, here)
        assert msg in str(info.value)
    rtx = dict(TRT_HEADER, trt_flavor="tensorrt-rtx", tensorrt_version="1.7.1.116", cuda_version="13.0",
               compute_capability=["8.6", "8.9"])
    check_device_compat(rtx, dict(HERE, trt_flavor="tensorrt-rtx", tensorrt_version="1.7.1.116",
                                  compute_capability="8.9", cuda_version="13.0"))
    with pytest.raises(EngineError, match="not among the engine's targets"):
        check_device_compat(rtx, dict(HERE, trt_flavor="tensorrt-rtx", tensorrt_version="1.7.1.116",
                                      compute_capability="12.0", cuda_version="13.0"))
    check_device_compat(dict(rtx, compute_capability=None),  # RTX portable default: RTX checks itself
                        dict(HERE, trt_flavor="tensorrt-rtx", tensorrt_version="1.7.1.116", cuda_version="13.0"))
    with pytest.raises(EngineError, match="lacks"):
        check_device_compat({"backend": "tensorrt"}, HERE)
    with pytest.raises(EngineError, match="not a TensorRT engine"):
        check_device_compat(dict(TRT_HEADER, backend="onnx"), HERE)


# ---------------------------------------------------------------------------------------------- CLI
def test_build_engine_cli_default_and_errors(ckpt, work, feats):
    r = run_tool(ckpt.path)
    assert r.returncode == 0, r.stderr
    out = Path(r.stdout.split("wrote ", 1)[1].split(" (", 1)[0])
    h = read_engine(out).header
    assert f"backend: {h['backend']} (auto" in r.stdout  # says which backend auto chose
    assert out == Path(ckpt.path).parent / f"ckpt.{h['backend']}.{h['precision']}.engine" and out.is_file()
    if h["backend"] != "tensorrt":  # runnable here
        s = Scorer(out)
        np.testing.assert_allclose(s.score(feats), Scorer(ckpt.path).score(feats), rtol=1e-4, atol=1e-6)

    r = run_tool(ckpt.path, "--backend", "onnx", "--fp32", "--batch", "2,4,8", "-o", work / "cli.engine")
    assert r.returncode == 0, r.stderr
    assert read_engine(work / "cli.engine").header["batch"] == {"min": 2, "opt": 4, "max": 8}
    for args, msg in [((work / "missing.pt",), "checkpoint not found"),
                      ((ckpt.path, "--image-size", "48x64"), "image size applies only to engines that include the backbone"),
                      ((ckpt.path, "--batch", "4,2,8"), "MIN <= OPT <= MAX"),
                      ((ckpt.path, "--fp16", "--fp32"), "not allowed with"),
                      ((ckpt.path, "--backend", "coreml"), "invalid choice")]:
        r = run_tool(*args)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
    foreign = work / "foreign.pt"
    foreign.write_bytes(b"nonsense")
    r = run_tool(foreign)
    assert r.returncode == 2 and "error:" in r.stderr
    h = run_tool("--help")
    assert h.returncode == 0
    for opt in ("--backend", "--fp16", "--fp32", "--batch", "--include-backbone", "--timing-cache", "--workspace",
                "-o", "--image-size", "tensorrt,native,onnx"):
        assert opt in h.stdout, opt


# ---------------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real_ckpt(real_features, tmp_path_factory):
    return train_lfdn(real_features.train, real_features.layout, real_features.feature_config,
                      tmp_path_factory.mktemp("real") / "ckpt.pt",
                      LFDNConfig(in_dim=real_features.layout.dim, width=128, depth=2, emb_dim=64),
                      TrainConfig(epochs=3, batch_size=128, lr=1e-3, seed=3, early_epoch=1),
                      cal_features=real_features.cal, progress=False)


@pytest.mark.data
@pytest.mark.parametrize("score_type,min_far_flagged", [("mfsim", 0.6), ("mse", 0.85)])
def test_calibrated_threshold_flags_5_percent_of_id_and_most_far_ood(real_ckpt, real_features, score_type,
                                                                     min_far_flagged):
    """Real fmnist-ood features and the checkpoint's calibrated threshold (ID acceptance rate 0.95): is_ood
    flags 5 % of the calibration set, about 5 % of unseen ID test images, and most far-OOD images (measured on
    this 3-epoch model: mfsim 20-100 % per set, 72 % mean; mse 90-100 %, 96 % mean); raising the threshold
    flags a nested, shrinking set."""
    s = Scorer(real_ckpt.path, score_type=score_type)
    assert real_ckpt.calibration["tpr"] == 0.95
    cal_flagged = np.mean(s.is_ood(real_features.cal))
    assert 0.05 - 2.5 / len(real_features.cal) <= cal_flagged <= 0.05 + 1.0 / len(real_features.cal), cal_flagged
    id_flagged = np.mean(s.is_ood(real_features.test))       # 400 unseen ID images
    assert 0.01 <= id_flagged <= 0.12, id_flagged
    far = {k: float(np.mean(s.is_ood(real_features.ood[k]))) for k in real_features.far_ood}
    assert np.mean(list(far.values())) >= min_far_flagged, far
    assert min(far.values()) > 2 * id_flagged, (far, id_flagged)
    # a stricter (higher) threshold flags fewer items, a subset of those flagged before
    z = np.concatenate([real_features.test, *[real_features.ood[k] for k in real_features.far_ood]])
    base = s.threshold
    scale = abs(base) if score_type == "mse" else 0.05
    flags = _nested_flags(s, z, [base - scale, base, base + scale, base + 4 * scale])
    counts = [int(f.sum()) for f in flags]
    assert counts[0] > counts[1] > counts[2] >= counts[3], counts
    assert np.array_equal(flags[1], s.is_ood(z))


@pytest.mark.data
def test_cli_onnx_engine_matches_pytorch_within_1e4_relative(real_ckpt, real_features, small_benchmark):
    """The deployment claim: tools/build_engine.py's ONNX artifact and the PyTorch graph agree in FP32."""
    z = np.concatenate([real_features.test[:150], *[v[:30] for v in real_features.ood.values()]])
    r = run_tool(real_ckpt.path, "--backend", "onnx")
    assert r.returncode == 0, r.stderr
    s = Scorer(Path(real_ckpt.path).with_name("ckpt.onnx.fp32.engine"))
    torch_scorer = Scorer(real_ckpt.path)
    a, b = s.explain(z), torch_scorer.explain(z)
    for k in ("mfsim", "mse"):
        rel = np.max(np.abs(a[k].astype(np.float64) - b[k]) / np.abs(b[k]))
        assert rel < 1e-4, (k, rel)
    assert np.mean(a["is_ood"] == b["is_ood"]) >= 0.99  # equal up to items within float rounding of the threshold
    ref = real_ckpt.reference_scorer().scores(z)["mfsim"]
    assert np.max(np.abs(a["score"] - ref) / np.abs(ref)) < 1e-4

    b_ = small_benchmark
    frames = np.concatenate([b_.test.images[:16], *[v.images[:4] for v in b_.ood.values()]])
    r = run_tool(real_ckpt.path, "--backend", "onnx", "--include-backbone")
    assert r.returncode == 0, r.stderr
    si = Scorer(Path(real_ckpt.path).with_name("ckpt.onnx.fp32.image.engine"))
    ti = Scorer.from_checkpoint(real_ckpt, include_backbone=True)
    x, y = si.score(frames).astype(np.float64), ti.score(frames)
    assert np.max(np.abs(x - y) / np.abs(y)) < 1e-4


@pytest.mark.data
@pytest.mark.skipif(not native_usable()[0], reason=f"native backend not usable here: {native_usable()[1]}")
def test_native_engine_matches_pytorch(real_ckpt, real_features, tmp_path):
    z = np.concatenate([real_features.test[:100], *[v[:20] for v in real_features.ood.values()]])
    path = build_engine(real_ckpt.path, backend="native", precision="fp32", out=tmp_path / "n.engine")
    s = Scorer(path)
    assert s.backend_name == "native"
    a, b = s.explain(z), Scorer(real_ckpt.path).explain(z)
    for k in ("mfsim", "mse"):
        ref = np.asarray(b[k], np.float64)
        assert np.max(np.abs(np.asarray(a[k], np.float64) - ref) / np.abs(ref)) < 1e-4, k
