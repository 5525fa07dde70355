"""INT8 ONNX through explicit quantization (Q/DQ), issue #26: build_artifact(ckpt, "onnx", "int8") and the TensorRT
builder's int8 path (lfdn_edge.builder.onnx_export.onnx_int8_qdq, tensorrt_builder).

What is checked:
* every Linear weight is the int8 initializer and float32 per-channel scale of quantize_weight_int8, EXACTLY
  (read back from the ONNX), through DequantizeLinear(axis=0), zero points 0; no float weight is left;
* every Linear input (per DDIM level) goes through QuantizeLinear/DequantizeLinear with the static scale recorded
  in the header; the scales are max |a| / 127 of the calibration vectors, recomputed here independently by
  onnxruntime on the FP32 graph (its Gemm inputs as extra outputs);
* the graph runs in onnxruntime (the onnxruntime backend) and its scores are near the FP32 reference. Tolerances:
  measured on the tiny model below, 64 standardised random vectors, checkpoint seeds 0-2 (max-abs calibration):
  mse rel. error 0.0062-0.0103, mfsim abs. 0.0098-0.0155, stage cosine abs. 0.023-0.040; limits about 3-4x that;
  lower bounds show the graph is quantized (FP32: ~3e-7);
* bad calibration input (shape, count, NaN, non-numeric), the backbone and calibration data for a non-int8 build
  are refused with clear errors;
* the TensorRT builder (stand-in module, as no TensorRT is installed here) builds int8 from the Q/DQ ONNX on a
  STRONGLY_TYPED network without precision flags where the module has that flag, else with BuilderFlag.INT8, and
  refuses a module with neither; a network without Q/DQ layers fails its INT8 check.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
ort = pytest.importorskip("onnxruntime", reason="the Q/DQ graph is verified with onnxruntime (pip install onnxruntime)")

from onnx import numpy_helper  # noqa: E402

from lfdn_edge.artifact.header import int8_entry  # noqa: E402
from lfdn_edge.benchmark import TorchRunner, chunked, paper_checkpoint, standardised_inputs  # noqa: E402
from lfdn_edge.builder import onnx_export  # noqa: E402
from lfdn_edge.builder.dispatch import build_artifact  # noqa: E402
from lfdn_edge.builder.quantize import WEIGHT_SCHEME, quantize_weight_int8  # noqa: E402
from lfdn_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402

DEPTH = 2
TINY = dict(stage_dims=(8, 16, 40), width=64, depth=DEPTH, emb_dim=32)
LAYERS = ["inp"] + [f"fc{k}.{j}" for j in range(DEPTH) for k in (1, 2)] + ["out"]
LEVELS = 3  # t=3, 3 DDIM steps (ScoreConfig defaults)


@pytest.fixture(scope="module")
def ckpt():
    return paper_checkpoint(0, **TINY)


@pytest.fixture(scope="module")
def art(ckpt):
    return build_artifact(ckpt, "onnx", "int8", (1, 64, 64))


def _state(ckpt, layer):
    path = layer if layer in ("inp", "out") else f"blocks.{layer.split('.')[1]}.{layer.split('.')[0]}"
    return ckpt.build_model("ema").state_dict()[f"{path}.weight"].numpy()


def test_weights_are_exactly_the_quantize_py_arrays_through_dequantize_axis0(ckpt, art):
    m = onnx.load_from_string(art.payload)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    for layer in LAYERS:
        name = f"lfdn.{layer}.weight"
        q, scale = quantize_weight_int8(_state(ckpt, layer))
        got_q, got_s = inits[f"{name}_quantized"], inits[f"{name}_scale"]
        assert got_q.dtype == np.int8 and got_s.dtype == np.float32
        assert np.array_equal(got_q, q) and np.array_equal(got_s, scale), layer
        assert not inits[f"{name}_zero_point"].any() and inits[f"{name}_zero_point"].dtype == np.int8
        assert name not in inits  # the float weight is gone
        dq = producers[name]
        assert dq.op_type == "DequantizeLinear" and list(dq.input) == [f"{name}_quantized", f"{name}_scale",
                                                                       f"{name}_zero_point"]
        assert [a.i for a in dq.attribute if a.name == "axis"] == [0]
    float_mats = [k for k, v in inits.items() if v.dtype == np.float32 and v.ndim == 2]
    assert float_mats == []  # no float Linear weight left anywhere
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["precision"] == "int8" and meta["int8_weight_scheme"] == WEIGHT_SCHEME


def test_activation_qdq_scales_match_an_independent_calibration(ckpt, art):
    m = onnx.load_from_string(art.payload)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    scales = art.header["int8"]["activation_scales"]
    assert sorted(scales) == sorted(f"{layer}@{i}" for layer in LAYERS for i in range(LEVELS))
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == len(LAYERS) * LEVELS
    raw_inputs = {}
    seen = {layer: 0 for layer in LAYERS}
    for g in gemms:
        layer = g.input[1][len("lfdn."):-len(".weight")]
        key = f"{layer}@{seen[layer]}"
        seen[layer] += 1
        dq = producers[g.input[0]]
        q = producers[dq.input[0]]
        assert dq.op_type == "DequantizeLinear" and q.op_type == "QuantizeLinear"
        assert dq.input[1] == q.input[1] and dq.input[2] == q.input[2]  # the same scale and zero point
        s, zp = inits[q.input[1]], inits[q.input[2]]
        assert s.shape == () and s.dtype == np.float32 and zp.shape == () and zp.dtype == np.int8 and zp == 0
        assert float(s) == scales[key]
        raw_inputs[key] = q.input[0]
    assert len(m.graph.node[0].output) and m.graph.node[0].op_type == "DequantizeLinear"
    assert sum(n.op_type == "QuantizeLinear" for n in m.graph.node) == len(LAYERS) * LEVELS

    # independent: onnxruntime runs the FP32 graph with the Gemm inputs as extra outputs, on the same vectors
    fp = onnx.load_from_string(onnx_export.onnx_bytes(ckpt))
    fp_gemms = [n for n in fp.graph.node if n.op_type == "Gemm"]
    names = [g.input[0] for g in fp_gemms]
    fp.graph.output.extend([onnx.helper.make_empty_tensor_value_info(n) for n in names])
    sess = ort.InferenceSession(fp.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(names, {"features": onnx_export.synthetic_calibration(ckpt)})
    seen = {layer: 0 for layer in LAYERS}
    for g, a in zip(fp_gemms, outs):
        layer = g.input[1][len("lfdn."):-len(".weight")]
        key = f"{layer}@{seen[layer]}"
        seen[layer] += 1
        np.testing.assert_allclose(scales[key], np.abs(a).max() / 127, rtol=1e-5, err_msg=key)
    cal = art.header["int8"]["calibration"]
    assert cal["method"] == "max" and cal["n"] == 512 and cal["source"].startswith("synthetic")
    assert art.header["int8"]["weight_scheme"] == WEIGHT_SCHEME
    assert art.header["precision"] == "int8" and art.header["backend"] == "onnx"


def test_int8_graph_runs_in_onnxruntime_near_the_fp32_reference(ckpt, art):
    backend = OnnxRuntimeBackend(art, "cpu", threads=1)
    x = standardised_inputs(64, ckpt.layout.stage_dims, 1)
    out = backend.run(x)
    ref = chunked(TorchRunner(ckpt, "cpu"), x, 64)
    mse_rel = np.max(np.abs(out.mse - ref["mse"]) / ref["mse"])
    mfsim = np.abs(out.mfsim - ref["mfsim"]).max()
    cos = np.abs(out.stage_cos - ref["stage_cos"]).max()
    assert 1e-4 < mse_rel < 0.04, mse_rel
    assert 1e-4 < mfsim < 0.05, mfsim
    assert cos < 0.15, cos


def test_given_calibration_vectors_set_the_scales_and_are_recorded(ckpt):
    x = 2.0 * onnx_export.synthetic_calibration(ckpt, n=64, seed=5)
    data, info = onnx_export.onnx_int8_qdq(ckpt, x, calibration_source="doubled test vectors")
    _, base = onnx_export.onnx_int8_qdq(ckpt, x / 2.0)
    assert info["calibration"]["source"] == "doubled test vectors" and info["calibration"]["n"] == 64
    assert info["activation_scales"]["inp@0"] > base["activation_scales"]["inp@0"]  # larger inputs, larger scale
    _, pct = onnx_export.onnx_int8_qdq(ckpt, x, method="percentile", percentile=99.0)
    assert all(pct["activation_scales"][k] <= info["activation_scales"][k] for k in info["activation_scales"])
    assert pct["calibration"]["statistic"].startswith("99.0")
    art = build_artifact(ckpt, "onnx", "int8", (1, 4, 8), int8_calibration=x)
    assert art.header["int8"]["activation_scales"] == pytest.approx(
        onnx_export.onnx_int8_qdq(ckpt, x)[1]["activation_scales"])


@pytest.mark.parametrize("bad, match", [
    (np.zeros((32, 10), np.float32), r"shape \(N, 64\)"),
    (np.zeros(64, np.float32), r"shape \(N, 64\)"),
    (np.zeros((8, 64), np.float32), "at least 16"),
    (np.full((32, 64), np.nan, np.float32), "NaN or inf"),
    (np.array([["a"] * 64] * 32), "numeric"),
])
def test_bad_calibration_input_is_refused(ckpt, bad, match):
    with pytest.raises(ValueError, match=match):
        build_artifact(ckpt, "onnx", "int8", (1, 4, 8), int8_calibration=bad)


def test_int8_refusals(ckpt):
    with pytest.raises(ValueError, match="backbone"):
        build_artifact(ckpt, "onnx", "int8", (1, 4, 8), include_backbone=True)
    with pytest.raises(ValueError, match="int8 onnx/tensorrt builds only"):
        build_artifact(ckpt, "onnx", "fp32", (1, 4, 8), int8_calibration=np.zeros((32, 64), np.float32))
    with pytest.raises(ValueError, match="precision int8 is built by"):
        build_artifact(ckpt, "torch", "int8", (1, 4, 8))
    with pytest.raises(ValueError, match="calibration method"):
        onnx_export.onnx_int8_qdq(ckpt, method="entropy")
    with pytest.raises(ValueError, match="INT8 header entry lacks"):
        int8_entry({"weight_scheme": WEIGHT_SCHEME})
    with pytest.raises(ValueError, match="positive finite"):
        int8_entry({"weight_scheme": WEIGHT_SCHEME, "activation_scheme": "x", "calibration": {},
                    "activation_scales": {"inp@0": 0.0}})


# ---------------------------------------------------------------------------------------------- TensorRT stand-in
def _fake_rtx(monkeypatch, strongly_typed_flag=True, int8_flag=True, fp16_flag=True):
    """A recording stand-in for the tensorrt_rtx module: the parser turns ONNX nodes into layers (Gemm ->
    MATRIX_MULTIPLY, QuantizeLinear -> QUANTIZE, DequantizeLinear -> DEQUANTIZE, all FLOAT outputs)."""
    import lfdn_edge.builder.tensorrt_builder as tb

    rec = {"network_flags": None, "config_flags": set(), "parsed_precision": None}
    LT = types.SimpleNamespace(MATRIX_MULTIPLY="mm", CONVOLUTION="conv", QUANTIZE="q", DEQUANTIZE="dq",
                               CONSTANT="const", SHAPE="shape", NORMALIZATION="norm", OTHER="other")
    DT = types.SimpleNamespace(HALF="half", FLOAT="float")
    flags = {"TF32": "tf32"}
    if fp16_flag:
        flags["FP16"] = "fp16"
    if int8_flag:
        flags["INT8"] = "int8"
    net_flags = {"STRONGLY_TYPED": 5} if strongly_typed_flag else {}

    class Tensor:
        def __init__(self, name, dtype="float"):
            self.name, self.dtype = name, dtype

    class Layer:
        def __init__(self, node):
            self.name = node.name
            self.type = {"Gemm": LT.MATRIX_MULTIPLY, "QuantizeLinear": LT.QUANTIZE,
                         "DequantizeLinear": LT.DEQUANTIZE}.get(node.op_type, LT.OTHER)
            self.num_outputs = len(node.output)

        def get_output(self, k):
            return Tensor("o", DT.FLOAT)

    class Network:
        def __init__(self):
            self.layers = []
            self.num_inputs = 1

        def get_input(self, i):
            return Tensor("features")

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class Parser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse(self, data):
            self.network.layers = [Layer(n) for n in onnx.load_from_string(data).graph.node]
            return True

    class Config:
        profiling_verbosity = None

        def set_memory_pool_limit(self, *a):
            pass

        def clear_flag(self, f):
            rec["config_flags"].discard(f)

        def set_flag(self, f):
            rec["config_flags"].add(f)

        def get_flag(self, f):
            return f in rec["config_flags"]

        def add_optimization_profile(self, p):
            pass

    class Profile:
        def set_shape(self, *a):
            pass

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, f):
            rec["network_flags"] = f
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"plan"

    class ILogger:
        def __init__(self, *a):
            pass

    fake = types.ModuleType("tensorrt_rtx")
    fake.__version__ = "1.2.0.54"
    fake.ILogger, fake.Builder, fake.OnnxParser = ILogger, Builder, Parser
    fake.BuilderFlag = types.SimpleNamespace(**flags)
    fake.NetworkDefinitionCreationFlag = types.SimpleNamespace(**net_flags)
    fake.LayerType, fake.DataType = LT, DT
    fake.ProfilingVerbosity = types.SimpleNamespace(DETAILED="detailed")
    fake.MemoryPoolType = types.SimpleNamespace(WORKSPACE="ws")
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", fake)
    monkeypatch.setattr(tb, "module_installed", lambda m: m == "tensorrt_rtx")
    monkeypatch.setattr(tb, "gpu_present", lambda: False)
    monkeypatch.setattr(tb, "cuda_device_info", lambda index=0: None)
    return rec


def _onnx_for(ckpt, asked):
    def f(prec):
        asked.append(prec)
        return onnx_export.onnx_int8_qdq(ckpt)[0] if prec == "int8" else onnx_export.onnx_bytes(ckpt, precision=prec)
    return f


@pytest.mark.parametrize("fp16_flag", [True, False])  # TensorRT 10 (weak typing available) and 11 / RTX
def test_tensorrt_int8_builds_a_strongly_typed_qdq_network_without_precision_flags(monkeypatch, ckpt, fp16_flag):
    from lfdn_edge.builder.tensorrt_builder import build_tensorrt_plan

    rec = _fake_rtx(monkeypatch, strongly_typed_flag=True, fp16_flag=fp16_flag)
    asked = []
    plan, extras = build_tensorrt_plan(_onnx_for(ckpt, asked), "features", (64,), (1, 4, 8), "int8", "tensorrt-rtx")
    assert plan == b"plan" and asked == ["int8"]
    assert rec["network_flags"] == 1 << 5 and "int8" not in rec["config_flags"] and "fp16" not in rec["config_flags"]
    net = extras["precision_check"]["network"]
    assert net["quantize_layers"] == len(LAYERS) * LEVELS
    assert net["dequantize_layers"] == len(LAYERS) * LEVELS + len(LAYERS)
    assert extras["strongly_typed"] is True and extras["onnx_precision"] == "int8"
    assert extras["precision_check"]["result"] == "verified"


def test_tensorrt_int8_without_strong_typing_sets_the_int8_flag(monkeypatch, ckpt):
    from lfdn_edge.builder.tensorrt_builder import build_tensorrt_plan

    rec = _fake_rtx(monkeypatch, strongly_typed_flag=False)
    plan, extras = build_tensorrt_plan(_onnx_for(ckpt, []), "features", (64,), (1, 4, 8), "int8", "tensorrt-rtx")
    assert rec["network_flags"] == 0 and "int8" in rec["config_flags"] and "fp16" not in rec["config_flags"]
    assert extras["onnx_precision"] == "int8"


def test_tensorrt_int8_refusals(monkeypatch, ckpt):
    from lfdn_edge.builder.tensorrt_builder import TensorRTBuildError, build_tensorrt_plan

    _fake_rtx(monkeypatch, strongly_typed_flag=False, int8_flag=False)
    with pytest.raises(TensorRTBuildError, match="neither STRONGLY_TYPED networks nor BuilderFlag.INT8"):
        build_tensorrt_plan(_onnx_for(ckpt, []), "features", (64,), (1, 4, 8), "int8", "tensorrt-rtx")
    _fake_rtx(monkeypatch)
    with pytest.raises(TensorRTBuildError, match="not explicitly quantized"):  # an FP32 graph given for int8
        build_tensorrt_plan(lambda p: onnx_export.onnx_bytes(ckpt), "features", (64,), (1, 4, 8), "int8",
                            "tensorrt-rtx")
