"""Build a TensorRT plan from the exported ONNX scoring graph.

Flavors and precision:
* TensorRT 10 (weakly typed networks, ``BuilderFlag.FP16`` exists): FP16 is built from the FP32 ONNX with
  the FP16 flag; the GroupNorm statistics and everything outside the LFDN and the backbone (noising, DDIM
  arithmetic, scores, preprocessing) are pinned to FP32 with precision constraints.
* TensorRT 11 and TensorRT-RTX (strongly typed, no ``BuilderFlag.FP16``): the network is created strongly
  typed and FP16 comes from the FP16 ONNX (:mod:`lfdn_edge.scoring_graph`), whose types the builder obeys.
The choice follows what the installed module offers (``hasattr(trt.BuilderFlag, "FP16")``), not its version.
* INT8 (every flavor): explicit quantization. The network is parsed from the Q/DQ ONNX graph
  (:func:`lfdn_edge.builder.onnx_export.onnx_int8_qdq`: int8 weights with the per-channel scales of
  lfdn_edge.builder.quantize, static per-tensor activation scales calibrated at export), with no calibrator.
  The network is created STRONGLY_TYPED wherever the module has that flag (TensorRT 10, 11, TensorRT-RTX: "use
  explicit quantization with strong typing; precision-control build flags are not required and should not be
  specified", TensorRT's explicit-quantization guide); only a TensorRT without it (8.6) gets
  ``BuilderFlag.INT8`` on a weakly typed network, as its explicit quantization requires. The precision check
  counts the network's Quantize/Dequantize layers (and, with a GPU, the engine's INT8 layers).

After the build the precision is checked: for strongly typed networks from the parsed network (every
MatMul/Convolution of the LFDN and backbone is FP16 in an FP16 build, no FP16 tensor in an FP32 build; the
builder must obey these types); with full TensorRT (a GPU is then present) also from the built engine's
layer information (engine inspector, ProfilingVerbosity.DETAILED), which is the only check for weakly typed
FP16 builds.

Safety: full TensorRT builders are only constructed when a CUDA GPU is present (on a GPU-less machine they
crash the process). TensorRT-RTX builds without a GPU (ahead-of-time compilation, portable to Ampere and
later by default, or to the compute capabilities given): that is how CI tests this path. Only
TensorRT-RTX builds without a GPU are tested in CI; full TensorRT 10/11 builds are written against the
documented API and untested here.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

from .._atomic import atomic_write
from ..probes import FLAVORS, RTX_COMPUTE_CAPABILITIES, cuda_device_info, gpu_present, module_installed, tensorrt_cuda_version
from ..errors import DeviceError, UnavailableError

COMPUTE_SCOPES = ("/lfdn/", "/trunk")  # ONNX node-name scopes of the LFDN and the backbone
MIN_FULL_TENSORRT = (8, 6)  # TensorRT 8.5 (JetPack 5) cannot parse ONNX LayerNormalization (opset 17)


class TensorRTBuildError(DeviceError):
    """TensorRT could not parse or build the network, or the engine does not run the requested precision."""


def choose_flavor(flavor: str = "auto") -> str:
    """"tensorrt" (full TensorRT, needs a GPU) or "tensorrt-rtx"; "auto" prefers full TensorRT with a GPU."""
    full, rtx, gpu = module_installed("tensorrt"), module_installed("tensorrt_rtx"), gpu_present()
    no_gpu_msg = ("full TensorRT is installed but there is no CUDA GPU here; its builder is never constructed "
                  "without one (that crashes the process). Build on the target device (on Jetson: JetPack's "
                  "TensorRT), or install TensorRT-RTX (pip install tensorrt-rtx-cu13) for a GPU-less build")
    if flavor == "auto":
        if full and gpu:
            return "tensorrt"
        if rtx:
            return "tensorrt-rtx"
        if full:
            raise UnavailableError(no_gpu_msg)
        raise ImportError("TensorRT is not installed: on Jetson use JetPack's TensorRT; elsewhere NVIDIA's "
                          "TensorRT packages, or pip install tensorrt-rtx-cu13 (RTX GPUs, builds without a GPU)")
    if flavor not in FLAVORS:
        raise ValueError(f"TensorRT flavor must be 'auto' or one of {list(FLAVORS)}, got {flavor!r}")
    if flavor == "tensorrt":
        if not full:
            raise ImportError("the Python module tensorrt is not installed (JetPack on Jetson; NVIDIA's packages)")
        if not gpu:
            raise UnavailableError(no_gpu_msg)
    elif not rtx:
        raise ImportError("the Python module tensorrt_rtx is not installed: pip install tensorrt-rtx-cu13")
    return flavor


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(version))[:3])


def check_tensorrt_version(trt, flavor: str) -> None:
    """Refuse full TensorRT older than 8.6 before anything is constructed: TensorRT 8.5 (JetPack 5) cannot
    parse the LayerNormalization the export writes for GroupNorm, so its builds would fail in the parser."""
    if flavor != "tensorrt":
        return
    got = _version_tuple(trt.__version__)
    if got[:2] < MIN_FULL_TENSORRT:
        need = ".".join(str(v) for v in MIN_FULL_TENSORRT)
        raise UnavailableError(f"TensorRT {trt.__version__} is too old: lfdn-edge needs TensorRT >= {need} (JetPack 6 "
                               "or later on Jetson); TensorRT 8.5 (JetPack 5) cannot parse the exported "
                               "LayerNormalization. Use --backend native or --backend onnx there")


def is_strongly_typed_only(trt) -> bool:
    """TensorRT 11 and TensorRT-RTX have no weak typing (no BuilderFlag.FP16): FP16 must come from the ONNX."""
    return not hasattr(trt.BuilderFlag, "FP16")


def _make_logger(trt):
    class CaptureLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, severity, msg):
            self.messages.append((str(severity).rsplit(".", 1)[-1], str(msg)))

    return CaptureLogger()


def _errors(logger, limit: int = 8) -> str:
    errs = [m for s, m in logger.messages if s in ("ERROR", "INTERNAL_ERROR")]
    return "\n  ".join(errs[-limit:]) if errs else "(no error message from TensorRT)"


def _in_scope(name: str) -> bool:
    return any(s in name for s in COMPUTE_SCOPES)


def network_precision(trt, network) -> dict:
    """Count the compute layers (MatMul, Convolution) of the LFDN and backbone by output type, FP16 tensors, and
    the Quantize / Dequantize layers (explicit quantization)."""
    compute = {"half": 0, "float": 0, "other": 0}
    any_half = False
    mm = {trt.LayerType.MATRIX_MULTIPLY, trt.LayerType.CONVOLUTION}
    q_type, dq_type = getattr(trt.LayerType, "QUANTIZE", None), getattr(trt.LayerType, "DEQUANTIZE", None)
    quant = dequant = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        types = [layer.get_output(k).dtype for k in range(layer.num_outputs)]
        any_half = any_half or any(t == trt.DataType.HALF for t in types)
        quant += q_type is not None and layer.type == q_type
        dequant += dq_type is not None and layer.type == dq_type
        if layer.type in mm and _in_scope(layer.name):
            t = types[0]
            compute["half" if t == trt.DataType.HALF else "float" if t == trt.DataType.FLOAT else "other"] += 1
    return {"compute_layers": compute, "any_fp16_tensor": any_half, "quantize_layers": int(quant),
            "dequantize_layers": int(dequant)}


def check_network_precision(summary: dict, precision: str) -> None:
    c = summary["compute_layers"]
    if precision == "int8":
        q, dq = summary.get("quantize_layers", 0), summary.get("dequantize_layers", 0)
        if q == 0 or dq <= q:  # one Q/DQ pair per activation, plus one DQ per weight
            raise TensorRTBuildError(f"the INT8 network is not explicitly quantized: {q} Quantize and {dq} "
                                     "Dequantize layers (expected Q/DQ on every Linear input and DQ on its weight)")
        if summary["any_fp16_tensor"]:
            raise TensorRTBuildError("an INT8 build has FP16 tensors in its network (the Q/DQ graph is FP32 outside "
                                     "the quantized Linear layers)")
    elif precision == "fp16":
        if c["half"] == 0 or c["float"] > 0:
            raise TensorRTBuildError(f"the network does not run FP16: {c['half']} FP16 and {c['float']} FP32 "
                                     "MatMul/Convolution layers in the LFDN/backbone (expected all FP16)")
    elif summary["any_fp16_tensor"]:
        raise TensorRTBuildError("an FP32 build has FP16 tensors in its network")


def _pin_fp32(trt, network) -> int:
    """Weakly typed FP16 builds: keep normalisation and everything outside the LFDN/backbone compute in FP32."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in (trt.LayerType.CONSTANT, trt.LayerType.SHAPE):
            continue
        if layer.type != trt.LayerType.NORMALIZATION and _in_scope(layer.name):
            continue
        if all(layer.get_output(k).dtype == trt.DataType.FLOAT for k in range(layer.num_outputs)):
            layer.precision = trt.DataType.FLOAT
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.DataType.FLOAT)
            pinned += 1
    return pinned


_TYPE_PATTERNS = (("fp16", r"\b(half|fp16|float16)\b"), ("bf16", r"\b(bf16|bfloat16)\b"),
                  ("fp32", r"\b(float|fp32|float32)\b"))


def tensor_type(tensor: dict) -> str | None:
    """The data type of one tensor of an engine-inspector layer: "fp16", "bf16", "fp32", "other" (int8, int32,
    bool, ...), or None where the JSON does not say.

    TensorRT 8.2-10.x write one field, "Format/Datatype" ("Row major linear FP16 format", or just "Half" /
    "Float" in later 10.x; "N/A due to dynamic shapes" without an execution context). TensorRT 11 split it into
    "DataType" ("Half", "Float") and "Format" ("Row major linear FP16 format (kLINEAR)"). "DataType" is read
    first, then the combined field, then the format string.
    """
    for key in ("DataType", "Format/Datatype", "Format"):
        text = str(tensor.get(key, "") or "").lower()
        if not text or text.startswith("n/a"):
            continue
        for name, pattern in _TYPE_PATTERNS:
            if re.search(pattern, text):
                return name
        if re.search(r"\b(u?int\d+|bool|fp8|fp4|e4m3|e8m0)\b", text):
            return "other"
    return None


def _is_int8(tensor: dict) -> bool:
    """Whether an engine-inspector tensor is INT8 (:func:`tensor_type` reports it as "other")."""
    return any(re.search(r"\bint8\b", str(tensor.get(k, "") or "").lower())
               for k in ("DataType", "Format/Datatype", "Format"))


def inspector_schema(info: dict) -> str:
    """Which engine-inspector JSON layout this is: "trt11" (I/O Tensors; per-tensor DataType and Format),
    "trt10" (Bindings; per-tensor Format/Datatype), or "unknown"."""
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    tensors = [t for layer in layers if isinstance(layer, dict) for key in ("Inputs", "Outputs")
               for t in layer.get(key, []) if isinstance(t, dict)]
    if "I/O Tensors" in info or any("DataType" in t for t in tensors):
        return "trt11"
    if "Bindings" in info or any("Format/Datatype" in t for t in tensors):
        return "trt10"
    return "unknown"


def engine_layer_precision(info_json: str) -> dict:
    """Summarise an engine inspector JSON (ProfilingVerbosity.DETAILED), TensorRT 10 or 11 layout: how many layers
    touch FP16/FP32 tensors, how many give no tensor type at all, and how many are opaque (Myelin-fused
    "ForeignNode"s, whose inner types are hidden)."""
    info = json.loads(info_json)
    if not isinstance(info, dict):
        info = {}
    layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
    half = flt = opaque = untyped = int8 = 0
    for layer in layers:
        if "ForeignNode" in str(layer.get("Name", "")) or str(layer.get("LayerType", "")).lower() == "myelin":
            opaque += 1
        types = {tensor_type(t) for key in ("Inputs", "Outputs") for t in layer.get(key, []) if isinstance(t, dict)}
        types.discard(None)
        int8 += any(_is_int8(t) for key in ("Inputs", "Outputs") for t in layer.get(key, []) if isinstance(t, dict))
        if "fp16" in types:
            half += 1
        elif "fp32" in types:
            flt += 1
        elif not types:
            untyped += 1
    return {"schema": inspector_schema(info), "layers": len(layers), "fp16_layers": half, "fp32_layers": flt,
            "int8_layers": int8, "untyped_layers": untyped, "opaque_layers": opaque}


def check_engine_precision(summary: dict, precision: str) -> str:
    """Decide from :func:`engine_layer_precision` (weakly typed builds, where the engine is the only evidence):
    "verified", "unverified (...)", or raise."""
    if summary["layers"] and summary.get("untyped_layers", 0) >= summary["layers"]:
        return "unverified (the engine inspector JSON gives no tensor types this version of lfdn-edge can read)"
    if precision == "int8":
        if summary.get("int8_layers", 0) > 0:
            return "verified"
        if summary["opaque_layers"]:
            return "unverified (layers fused by Myelin hide their types)"
        raise TensorRTBuildError(f"TensorRT built no INT8 layer from the Q/DQ network ({summary})")
    if precision == "fp16":
        if summary["fp16_layers"] > 0:
            return "verified"
        if summary["opaque_layers"] and summary["opaque_layers"] + summary["fp32_layers"] >= summary["layers"]:
            return "unverified (layers fused by Myelin hide their types)"
        raise TensorRTBuildError(f"TensorRT built no FP16 layer ({summary}); the GPU may lack fast FP16. "
                                 "Build with --fp32, or check the TensorRT log")
    if summary["fp16_layers"] > 0:
        raise TensorRTBuildError(f"an FP32 build has {summary['fp16_layers']} FP16 layers")
    return "verified"


def precision_result(strong: bool, precision: str, engine: dict | None) -> str:
    """The header's precision_check result. Strongly typed builds (TensorRT 11, TensorRT-RTX): the network types
    decide (:func:`check_network_precision` already raised if they were wrong; the builder must obey them), and
    the engine inspector's summary is only recorded. Weakly typed builds (TensorRT 10): the engine decides."""
    if strong:
        return "verified"
    if engine is None:
        return "unverified (no engine inspector without a GPU)"
    return check_engine_precision(engine, precision)


def _inspect(trt, logger, plan: bytes, input_name: str, opt_shape) -> dict:
    """Deserialise on the GPU (full TensorRT only; the caller ensured a GPU) and read the layer information."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise TensorRTBuildError(f"the built plan does not deserialise: {_errors(logger)}")
    context = engine.create_execution_context()
    context.set_input_shape(input_name, tuple(opt_shape))
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    return engine_layer_precision(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def _timing_cache(trt, config, path: Path | None, log) -> None:
    if path is None:
        return
    data = path.read_bytes() if path.is_file() else b""
    cache = None
    try:
        cache = config.create_timing_cache(data)
        ok = cache is not None and config.set_timing_cache(cache, False)
    except Exception as exc:  # noqa: BLE001 - a corrupted cache file: start a fresh one
        log(f"timing cache {path} unreadable ({exc}); starting a new one")
        ok = False
    if not ok:
        if data:
            log(f"timing cache {path} does not match this TensorRT/GPU; starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), False)
    elif data:
        log(f"timing cache: loaded {path} ({len(data)} bytes)")


def _save_timing_cache(config, path: Path | None, log) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is None:
        return
    data = bytes(cache.serialize())
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    log(f"timing cache: wrote {path} ({len(data)} bytes)")


def configure_builder(trt, builder, network, precision: str, input_name: str, input_tail: tuple[int, ...],
                      batch: tuple[int, int, int], workspace_mb: int | None = None, strongly_typed: bool | None = None):
    """The builder config of an lfdn-edge build: (config, number of layers pinned to FP32).

    ``strongly_typed``: whether the network was created STRONGLY_TYPED (None: as the module decides,
    :func:`is_strongly_typed_only`). INT8 (explicit quantization, Q/DQ in the network, no calibrator) sets
    ``BuilderFlag.INT8`` only on a weakly typed network (TensorRT 8.6); strongly typed networks take no precision
    flags.

    * TF32 off (``BuilderFlag.TF32`` is on by default in TensorRT and TensorRT-RTX): FP32 plans must multiply in
      FP32, not with TF32's 10-bit mantissas on Ampere and later; in FP16 builds the parts kept in FP32 (the
      in-graph resize's MatMuls, the scores) stay true FP32 too.
    * Detailed profiling verbosity (the engine inspector's layer types), one optimisation profile over the
      batch range, the workspace limit if given.
    * Weakly typed FP16 (TensorRT 10): ``BuilderFlag.FP16`` with precision constraints, the normalisation and
      everything outside the LFDN/backbone pinned to FP32 (:func:`_pin_fp32`).
    """
    config = builder.create_builder_config()
    if workspace_mb is not None:
        if int(workspace_mb) < 1:
            raise ValueError(f"workspace must be >= 1 MB, got {workspace_mb}")
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    lo, opt, hi = (int(b) for b in batch)
    tail = tuple(int(d) for d in input_tail)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (lo, *tail), (opt, *tail), (hi, *tail))
    config.add_optimization_profile(profile)

    pinned = 0
    if precision == "fp16" and not is_strongly_typed_only(trt):
        config.set_flag(trt.BuilderFlag.FP16)
        for flag in ("PREFER_PRECISION_CONSTRAINTS", "OBEY_PRECISION_CONSTRAINTS"):
            if hasattr(trt.BuilderFlag, flag):
                config.set_flag(getattr(trt.BuilderFlag, flag))
                break
        pinned = _pin_fp32(trt, network)
    strong = is_strongly_typed_only(trt) if strongly_typed is None else bool(strongly_typed)
    if precision == "int8" and not strong:
        if not hasattr(trt.BuilderFlag, "INT8"):
            raise TensorRTBuildError(f"TensorRT {trt.__version__} has neither STRONGLY_TYPED networks nor "
                                     "BuilderFlag.INT8: it cannot build the INT8 Q/DQ network")
        config.set_flag(trt.BuilderFlag.INT8)
    return config, pinned


def build_tensorrt_plan(onnx_for: Callable[[str], bytes], input_name: str, input_tail: tuple[int, ...],
                        batch: tuple[int, int, int], precision: str, flavor: str = "auto",
                        timing_cache: str | os.PathLike | None = None, workspace_mb: int | None = None,
                        compute_capabilities: list[str] | None = None,
                        log: Callable[[str], None] = lambda s: None) -> tuple[bytes, dict]:
    """Parse the ONNX (``onnx_for(precision)`` gives its bytes), build a serialized plan, check its precision.

    Returns (plan bytes, header entries: trt_flavor, tensorrt_version, cuda_version, compute_capability,
    gpu_name, strongly_typed, tf32 (False: TF32 cleared), onnx_precision, precision_check, workspace_mb,
    built_without_gpu).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    flavor = choose_flavor(flavor)
    gpu = cuda_device_info(0)
    if gpu is None:
        log(f"no GPU here: {flavor} compiles the engine ahead of time; it is not run or timed on this machine")
    trt = __import__(FLAVORS[flavor])
    check_tensorrt_version(trt, flavor)
    strong = is_strongly_typed_only(trt)
    if precision == "int8":  # explicit quantization: strongly typed wherever the flag exists (module doc)
        strong = strong or hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
        onnx_precision = "int8"
    else:
        onnx_precision = precision if strong else "fp32"
    onnx_model = onnx_for(onnx_precision)

    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if int(str(trt.__version__).split(".")[0]) < 10 and flavor == "tensorrt":  # TensorRT 8.x: explicit batch
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_model):
        errs = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTBuildError(f"TensorRT ({flavor} {trt.__version__}) could not parse the ONNX graph:\n  {errs}")
    if network.num_inputs != 1 or network.get_input(0).name != input_name:
        raise TensorRTBuildError(f"expected one network input {input_name!r}, got "
                                 f"{[network.get_input(i).name for i in range(network.num_inputs)]}")

    lo, opt, hi = (int(b) for b in batch)
    tail = tuple(int(d) for d in input_tail)
    config, pinned = configure_builder(trt, builder, network, precision, input_name, tail, (lo, opt, hi),
                                       workspace_mb, strongly_typed=strong)

    compute_capability: str | list[str] | None
    if flavor == "tensorrt-rtx":
        if compute_capabilities:
            unknown = [c for c in compute_capabilities if c not in RTX_COMPUTE_CAPABILITIES]
            if unknown:
                raise ValueError(f"TensorRT-RTX compute capabilities must be among {list(RTX_COMPUTE_CAPABILITIES)}, "
                                 f"got {unknown}")
            config.num_compute_capabilities = len(compute_capabilities)
            for k, cc in enumerate(compute_capabilities):
                config.set_compute_capability(getattr(trt.ComputeCapability, RTX_COMPUTE_CAPABILITIES[cc]), k)
            compute_capability = list(compute_capabilities)
        elif gpu is not None:
            config.num_compute_capabilities = 1
            config.set_compute_capability(trt.ComputeCapability.CURRENT, 0)
            compute_capability = [gpu.compute_capability]
        else:
            compute_capability = None  # TensorRT-RTX's portable default (Ampere and later)
        if timing_cache is not None:
            log("TensorRT-RTX: timing caches are no-ops (deprecated in TensorRT-RTX 1.2); --timing-cache ignored")
            timing_cache = None
    else:
        if compute_capabilities:
            raise ValueError("compute capabilities can only be chosen for TensorRT-RTX; full TensorRT builds for "
                             "the GPU it runs on")
        compute_capability = gpu.compute_capability
    cache_path = Path(timing_cache) if timing_cache is not None else None
    _timing_cache(trt, config, cache_path, log)

    summary = network_precision(trt, network)
    if strong or precision == "int8":
        check_network_precision(summary, precision)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TensorRTBuildError(f"TensorRT ({flavor} {trt.__version__}) failed to build the engine:\n  "
                                 f"{_errors(logger)}")
    plan = bytes(plan)
    _save_timing_cache(config, cache_path, log)

    check = {"method": "network types (strongly typed)" if strong else "engine inspector", "network": summary}
    eng = None
    if flavor == "tensorrt":  # a GPU is present: read the built engine's layer precisions too
        eng = _inspect(trt, logger, plan, input_name, (opt, *tail))
        check["engine"] = eng
    check["result"] = precision_result(strong, precision, eng)
    if check["result"] != "verified":
        log(f"precision check: {check['result']}")
    if pinned:
        check["fp32_pinned_layers"] = pinned
    extras = {
        "trt_flavor": flavor,
        "tensorrt_version": str(trt.__version__),
        "cuda_version": tensorrt_cuda_version(trt),
        "compute_capability": compute_capability,
        "gpu_name": gpu.name if gpu else None,
        "strongly_typed": strong,
        "tf32": bool(config.get_flag(trt.BuilderFlag.TF32)) if hasattr(trt.BuilderFlag, "TF32") else None,
        "onnx_precision": onnx_precision,
        "precision_check": check,
        "workspace_mb": None if workspace_mb is None else int(workspace_mb),
        "built_without_gpu": gpu is None,
    }
    return plan, extras
