"""The TensorRT path as far as a GPU-less machine allows: TensorRT-RTX parses the exported ONNX and builds
serialized engines ahead of time (no GPU needed), and the precision checks accept and reject what they should.

The builds run in one subprocess, so that a crash inside TensorRT would fail these tests instead of killing
pytest. Nothing here constructs a full or lean TensorRT runtime (that crashes without a GPU) or runs a plan.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfdn_edge.artifact.file import read_engine
from lfdn_edge.builder.tensorrt_builder import (TensorRTBuildError, build_tensorrt_plan, check_engine_precision,
                                               check_network_precision, choose_flavor, engine_layer_precision,
                                               precision_result, tensor_type)
from lfdn_edge.probes import gpu_present

ROOT = Path(__file__).resolve().parents[1]
HAVE_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
needs_rtx = pytest.mark.skipif(not HAVE_RTX, reason="tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13)")
DEPTH = 2

BUILD_SCRIPT = r"""
import json, sys
from pathlib import Path
from lfdn_edge.builder.dispatch import build_engine
from lfdn_edge.builder.tensorrt_builder import build_tensorrt_plan, configure_builder
from lfdn_edge.builder.onnx_export import onnx_bytes

ckpt, out = sys.argv[1], Path(sys.argv[2])
results, logs = {}, []

def attempt(name, fn):
    try:
        results[name] = {"ok": True, "value": str(fn())}
    except Exception as exc:
        results[name] = {"ok": False, "type": type(exc).__name__, "msg": str(exc)}

rtx = dict(backend="tensorrt", trt_flavor="tensorrt-rtx", log=logs.append)
attempt("features_fp16", lambda: build_engine(ckpt, precision="fp16", batch=(1, 8, 32), out=out / "f16.engine",
                                              timing_cache=out / "timing.cache", **rtx))
attempt("features_fp32_sm86", lambda: build_engine(ckpt, precision="fp32", batch=(2, 4, 16), out=out / "f32.engine",
                                                   compute_capabilities=["8.6"], workspace_mb=256, **rtx))
attempt("images_fp16", lambda: build_engine(ckpt, precision="fp16", batch=(1, 2, 4), include_backbone=True,
                                            image_size=(72, 96), out=out / "img16.engine", **rtx))
attempt("fp32_on_turing", lambda: build_engine(ckpt, precision="fp32", out=out / "turing.engine",
                                               compute_capabilities=["7.5"], **rtx))
# the FP32 graph handed to a strongly typed FP16 build: the precision check must refuse it
attempt("fp32_graph_as_fp16", lambda: build_tensorrt_plan(lambda p: onnx_bytes(ckpt, precision="fp32"), "features",
                                                          (512,), (1, 2, 4), "fp16", "tensorrt-rtx"))

# TF32 on the real TensorRT-RTX builder config, before and after configure_builder
import tensorrt_rtx as trt
tf32 = {}
for prec in ("fp32", "fp16"):
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_bytes(ckpt, precision=prec))
    tf32[prec + "_default"] = builder.create_builder_config().get_flag(trt.BuilderFlag.TF32)
    config, _ = configure_builder(trt, builder, network, prec, "features", (512,), (1, 4, 8))
    tf32[prec] = config.get_flag(trt.BuilderFlag.TF32)
json.dump({"results": results, "logs": logs, "tf32": tf32}, open(out / "results.json", "w"))
"""


def _synthetic_checkpoint(path):
    from lfdn_edge.features import FeatureConfig, FeatureLayout
    from lfdn_edge.model import LFDNConfig
    from lfdn_edge.train import TrainConfig, train_lfdn

    z = np.random.default_rng(0).standard_normal((160, 512)).astype(np.float32)
    return train_lfdn(z[:128], FeatureLayout((16, 24, 40, 112, 320)), FeatureConfig(backbone="efficientnet-lite0", input_size=64), path,
                      LFDNConfig(in_dim=512, width=64, depth=DEPTH, emb_dim=32),
                      TrainConfig(epochs=2, batch_size=64, early_epoch=1), cal_features=z[128:], progress=False)


@pytest.fixture(scope="module")
def rtx_builds(tmp_path_factory):
    if not HAVE_RTX:
        pytest.skip("tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13)")
    out = tmp_path_factory.mktemp("rtx")
    ckpt = _synthetic_checkpoint(out / "ckpt.pt")
    r = subprocess.run([sys.executable, "-c", BUILD_SCRIPT, str(out / "ckpt.pt"), str(out)], capture_output=True,
                       text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, f"TensorRT-RTX build subprocess failed (rc {r.returncode}):\n{r.stderr[-4000:]}"
    data = json.loads((out / "results.json").read_text())
    return out, ckpt, data["results"], data["logs"], data["tf32"]


def _ok(results, name):
    res = results[name]
    assert res["ok"], f"{name}: {res.get('type')}: {res.get('msg')}"
    return read_engine(res["value"])


@needs_rtx
def test_rtx_builds_fp16_feature_engine_with_header(rtx_builds):
    import tensorrt_rtx

    out, ckpt, results, logs, _ = rtx_builds
    art = _ok(results, "features_fp16")
    h = art.header
    assert h["backend"] == "tensorrt" and h["trt_flavor"] == "tensorrt-rtx"
    assert h["tensorrt_version"] == tensorrt_rtx.__version__
    assert h["precision"] == "fp16" and h["onnx_precision"] == "fp16" and h["strongly_typed"] is True
    assert h["batch"] == {"min": 1, "opt": 8, "max": 32}
    assert h["input"] == {"name": "features", "dtype": "float32", "shape": [-1, 512]}
    assert h["layout"]["stage_dims"] == [16, 24, 40, 112, 320]
    assert h["threshold"] == pytest.approx(ckpt.threshold("mfsim"))
    assert h["cuda_version"] is not None
    assert h["built_without_gpu"] is (not gpu_present())
    if h["built_without_gpu"]:
        assert h["compute_capability"] is None  # TensorRT-RTX's portable default targets
    check = h["precision_check"]
    levels = len(h["ddim_levels"])
    # every Linear of the LFDN (input, 2 per block, output) at every DDIM level runs in FP16
    assert check["result"] == "verified"
    assert check["network"]["compute_layers"] == {"half": levels * (2 * DEPTH + 2), "float": 0, "other": 0}
    assert len(art.payload) > 100_000
    # TensorRT-RTX ignores timing caches: said so, nothing written
    assert any("timing caches are no-ops" in line for line in logs)
    assert not (out / "timing.cache").exists()


@needs_rtx
def test_rtx_builds_fp32_engine_for_a_chosen_compute_capability(rtx_builds):
    _, _, results, _, _ = rtx_builds
    h = _ok(results, "features_fp32_sm86").header
    assert h["precision"] == "fp32" and h["onnx_precision"] == "fp32"
    assert h["compute_capability"] == ["8.6"] and h["workspace_mb"] == 256
    net = h["precision_check"]["network"]
    assert net["any_fp16_tensor"] is False and net["compute_layers"]["half"] == 0
    assert h["batch"] == {"min": 2, "opt": 4, "max": 16}
    assert h["tf32"] is False  # a true FP32 plan: TF32 cleared on the config it was built with


@needs_rtx
def test_rtx_builder_config_has_tf32_off(rtx_builds):
    """TF32 is on by default in a fresh TensorRT-RTX config (so this is not vacuous); configure_builder clears it
    for FP32 builds, and for FP16 builds (their FP32 parts stay true FP32)."""
    *_, tf32 = rtx_builds
    assert tf32["fp32_default"] is True and tf32["fp16_default"] is True
    assert tf32["fp32"] is False
    assert tf32["fp16"] is False


@needs_rtx
def test_rtx_builds_fp16_image_engine_with_backbone_inside(rtx_builds):
    _, _, results, _, _ = rtx_builds
    h = _ok(results, "images_fp16").header
    assert h["includes_backbone"] is True and h["image_size"] == [72, 96]
    assert h["input"]["dtype"] == "uint8" and h["input"]["shape"] == [-1, 72, 96, 3]
    c = h["precision_check"]["network"]["compute_layers"]
    assert c["float"] == 0 and c["half"] > 18  # the LFDN's matmuls plus the backbone's convolutions


@needs_rtx
def test_rtx_build_failure_is_a_clear_error(rtx_builds):
    _, _, results, _, _ = rtx_builds
    res = results["fp32_on_turing"]  # TensorRT-RTX has no FP32 GEMM for Turing (SM75)
    assert not res["ok"] and res["type"] == "TensorRTBuildError"
    assert "failed to build the engine" in res["msg"] and "SM75" in res["msg"]


@needs_rtx
def test_rtx_precision_check_rejects_an_fp32_graph_built_as_fp16(rtx_builds):
    _, _, results, _, _ = rtx_builds
    res = results["fp32_graph_as_fp16"]
    assert not res["ok"] and res["type"] == "TensorRTBuildError" and "does not run FP16" in res["msg"]


@needs_rtx
@pytest.mark.skipif(gpu_present(), reason="checks the refusal on a GPU-less machine")
def test_scorer_refuses_tensorrt_engines_without_a_gpu(rtx_builds):
    from lfdn_edge import Scorer

    _, _, results, _, _ = rtx_builds
    with pytest.raises(RuntimeError, match="run only on a GPU"):
        Scorer(results["features_fp16"]["value"])


def _fake_full_tensorrt(monkeypatch, gpu: bool, rtx: bool):
    """This machine made to look like one with full TensorRT (a recording stand-in), with or without a GPU and
    TensorRT-RTX: the branches of choose_flavor are then reached whatever is really installed here."""
    from trt_fakes import fake_full_tensorrt

    return fake_full_tensorrt(monkeypatch, gpu=gpu, rtx=rtx)


def test_full_tensorrt_builder_is_never_constructed_without_a_gpu(monkeypatch):
    """Full TensorRT installed, no GPU: choose_flavor refuses (explicit "tensorrt", or "auto" with no RTX to fall
    back on) and build_tensorrt_plan stops before touching the TensorRT module; with RTX, auto picks RTX."""
    constructed = _fake_full_tensorrt(monkeypatch, gpu=False, rtx=False)
    for flavor in ("tensorrt", "auto"):
        with pytest.raises(RuntimeError, match="no CUDA GPU here; its builder is never constructed"):
            choose_flavor(flavor)
    onnx_calls = []
    with pytest.raises(RuntimeError, match="no CUDA GPU here"):
        build_tensorrt_plan(lambda p: onnx_calls.append(p) or b"", "features", (512,), (1, 2, 4), "fp32", "tensorrt")
    assert constructed == [] and onnx_calls == []
    _fake_full_tensorrt(monkeypatch, gpu=False, rtx=True)
    assert choose_flavor("auto") == "tensorrt-rtx"
    with pytest.raises(RuntimeError, match="no CUDA GPU here"):
        choose_flavor("tensorrt")


def test_full_tensorrt_is_chosen_when_a_gpu_is_present(monkeypatch):
    """The other side of the branch (so the test above is not passing for an unrelated reason): with a GPU,
    full TensorRT is chosen, and auto prefers it over RTX."""
    _fake_full_tensorrt(monkeypatch, gpu=True, rtx=True)
    assert choose_flavor("tensorrt") == "tensorrt"
    assert choose_flavor("auto") == "tensorrt"
    assert choose_flavor("tensorrt-rtx") == "tensorrt-rtx"


def test_network_precision_check():
    fp16 = {"compute_layers": {"half": 18, "float": 0, "other": 0}, "any_fp16_tensor": True}
    mixed = {"compute_layers": {"half": 12, "float": 6, "other": 0}, "any_fp16_tensor": True}
    fp32 = {"compute_layers": {"half": 0, "float": 18, "other": 0}, "any_fp16_tensor": False}
    check_network_precision(fp16, "fp16")
    check_network_precision(fp32, "fp32")
    for summary, precision in ((mixed, "fp16"), (fp32, "fp16"), (fp16, "fp32")):
        with pytest.raises(TensorRTBuildError):
            check_network_precision(summary, precision)


DATA = Path(__file__).parent / "data"


def _fixture(name):
    return (DATA / name).read_text()


# tests/data/inspector_trt{10,11}_{fp16,fp32}.json: engine-inspector JSON (ProfilingVerbosity.DETAILED) written by
# hand for a small lfdn-edge graph, in the layouts the TensorRT documentation gives: TensorRT 8.2-10.x with one
# per-tensor "Format/Datatype" string and a "Bindings" list; TensorRT 11 with "Bindings" replaced by "I/O Tensors"
# and the per-tensor field split into "DataType" ("Half"/"Float") and "Format" (the 11.x migration guide's
# IEngineInspector page). Not recorded from a real engine: no GPU here.
@pytest.mark.parametrize("version", ["trt10", "trt11"])
def test_engine_inspector_reads_both_layouts(version):
    half = engine_layer_precision(_fixture(f"inspector_{version}_fp16.json"))
    assert half["schema"] == version
    assert half["layers"] == 7 and half["fp16_layers"] == 3 and half["untyped_layers"] == 0
    assert check_engine_precision(half, "fp16") == "verified"
    with pytest.raises(TensorRTBuildError, match="FP16 layers"):
        check_engine_precision(half, "fp32")
    flt = engine_layer_precision(_fixture(f"inspector_{version}_fp32.json"))
    assert flt["schema"] == version and flt["fp16_layers"] == 0 and flt["fp32_layers"] == 6
    assert check_engine_precision(flt, "fp32") == "verified"
    with pytest.raises(TensorRTBuildError, match="no FP16 layer"):
        check_engine_precision(flt, "fp16")


def test_strongly_typed_builds_are_decided_by_the_network_types():
    """TensorRT 11 is strongly typed: a correct FP16 build is verified from its network even when the engine
    inspector shows no FP16 layer (a schema this code cannot read, or Myelin hiding the types); weakly typed
    TensorRT 10 builds are decided by the engine and still rejected."""
    flt = engine_layer_precision(_fixture("inspector_trt11_fp32.json"))
    assert precision_result(True, "fp16", flt) == "verified"
    assert precision_result(True, "fp32", None) == "verified"
    with pytest.raises(TensorRTBuildError, match="no FP16 layer"):
        precision_result(False, "fp16", flt)
    assert precision_result(False, "fp16", engine_layer_precision(_fixture("inspector_trt10_fp16.json"))) == "verified"


def test_engine_inspector_edge_cases():
    def info(*tensors, name="layer0"):
        return json.dumps({"Layers": [{"Name": name, "LayerType": "gemm", "Inputs": list(tensors), "Outputs": []}]})

    assert tensor_type({"Format/Datatype": "Half"}) == "fp16"  # later 10.x: just the type
    assert tensor_type({"Format/Datatype": "Float"}) == "fp32"
    assert tensor_type({"DataType": "BFloat16", "Format": "Row major linear BF16 format (kLINEAR)"}) == "bf16"
    assert tensor_type({"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}) == "other"
    assert tensor_type({"Format/Datatype": "N/A due to dynamic shapes"}) is None
    # an unreadable layout is "unverified", never "built no FP16 layer"
    unknown = engine_layer_precision(info({"Name": "x", "Type": "fp16?"}))
    assert unknown["untyped_layers"] == 1 and check_engine_precision(unknown, "fp16").startswith("unverified")
    fused = engine_layer_precision(info({"Format/Datatype": "Row major linear FP32"}, name="{ForeignNode[/lfdn/inp]}"))
    assert check_engine_precision(fused, "fp16").startswith("unverified")
