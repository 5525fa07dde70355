"""ONNX export of the scoring graph (:mod:`lfdn_edge.scoring_graph`), with a dynamic batch axis.

The exported model takes ``features`` (N, C) float32, or ``images`` (N, H, W, 3) uint8 for graphs that include
the backbone, and returns score, mse, mfsim (N,) and stage_cos (N, M) in float32. It records what it is in its
metadata_props (lfdn-edge version, precision, score type, stage sizes, score settings) and passes
onnx.checker. This is the build side: the onnx engine payload and the input of the TensorRT builder.

INT8 (precision "int8", features graphs only): explicit quantization (Q/DQ), see :func:`onnx_int8_qdq`. The FP32
graph is exported, then every LFDN Linear (inp, fc1/fc2 of each block, out; a Gemm with transB=1) is rewritten:

* weight: the float initializer ``lfdn.<layer>.weight`` (out, in) is replaced by the int8 initializer
  ``<name>_quantized`` and the float32 per-output-channel ``<name>_scale`` of
  :func:`lfdn_edge.builder.quantize.quantize_weight_int8` (exactly those arrays; zero points 0) through
  ``DequantizeLinear(axis=0)``, so TensorRT, onnxruntime and the native INT8 engines multiply by the same int8
  weights;
* input activation: ``QuantizeLinear`` / ``DequantizeLinear`` (int8, zero point 0, symmetric) with a STATIC
  per-tensor scale, one per Linear and DDIM level (the graph unrolls the levels, and the input of a layer
  differs between levels). TensorRT needs static activation scales: it cannot do the native CPU engine's
  dynamic per-row scales (max |a| / 127 of each row at run time), so this graph quantizes coarser than the
  native engine and depends on its calibration.

Calibration: the FP32 graph is run in torch on calibration feature vectors and each Linear's input is recorded
per level; its scale is ``stat / 127`` with stat the max |a| ("max", the default) or the 99.99th percentile of
|a| ("percentile"). Measured on the Quick-start checkpoint (all 9262 fmnist-ood vectors,
benchmarks/results/precision-auroc-2026-12-06.json): max-abs gave the smaller score errors (per item: mse rel.
6.5e-2 vs 1.9e-1, mfsim abs. 1.5e-2 vs 2.5e-2) and AUROC changes (0.026 vs 0.029 points): clipping at an ID
percentile distorts exactly the large activations that OOD inputs produce. The vectors: by default drawn from the checkpoint alone (it stores no feature
statistics -- ``calibration.id_mean`` / ``id_std`` are statistics of the ID SCORES -- but the features are
standardised per sample and stage (mean 0, variance 1 over each stage's channels), so per-stage standardised
Gaussian vectors with a per-row offset, a fixed seed, :func:`synthetic_calibration`); or real ID feature
vectors given by the caller (e.g. the checkpoint's calibration split through the feature cache).
"""

from __future__ import annotations

import importlib.util
import json
import inspect
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
import torch

from .._atomic import atomic_write
from .._version import __version__
from ..checkpoint import Checkpoint
from ..scoring_graph import FEATURES_INPUT, IMAGES_INPUT, SCORE_OUTPUTS, as_checkpoint, build_graph, example_input
from .. import defaults
from .quantize import QMAX, WEIGHT_SCHEME, quantize_weight_int8

DEFAULT_OPSET = defaults.ONNX_OPSET
INT8_ACT_METHODS = ("max", "percentile")
INT8_ACT_METHOD = "max"
INT8_ACT_PERCENTILE = 99.99
INT8_CALIBRATION_N = 512
INT8_CALIBRATION_MIN = 16
INT8_CALIBRATION_SEED = 0
ACTIVATION_SCHEME = "a8-static-per-tensor-symmetric"


def onnx_bytes(ckpt: Checkpoint | str | os.PathLike, include_backbone: bool = False, precision: str = "fp32",
               opset: int = DEFAULT_OPSET, score_type: str = defaults.SCORE_TYPE, image_size=None) -> bytes:
    """Export the scoring graph to an in-memory ONNX model with a dynamic batch axis (fp32 or fp16; the INT8 Q/DQ
    graph, which needs calibration, is :func:`onnx_int8_qdq`)."""
    if int(opset) < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    if importlib.util.find_spec("onnx") is None:
        raise ImportError("ONNX export needs the onnx package: pip install onnx (or pip install 'lfdn-edge[onnx]')")
    ckpt = as_checkpoint(ckpt)
    graph = build_graph(ckpt, include_backbone, precision, score_type, image_size)
    name = IMAGES_INPUT if include_backbone else FEATURES_INPUT
    dynamic = {name: {0: "batch"}, **{o: {0: "batch"} for o in SCORE_OUTPUTS}}
    with tempfile.TemporaryDirectory(prefix="lfdn-onnx-") as tmp:
        path = Path(tmp) / "graph.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: intended
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
            torch.onnx.export(graph, (example_input(graph),), str(path), input_names=[name],
                              output_names=list(SCORE_OUTPUTS), dynamic_axes=dynamic, opset_version=int(opset),
                              do_constant_folding=True, **_legacy_exporter_kwargs())
        data = path.read_bytes()
    return _add_metadata(data, ckpt, include_backbone, precision, score_type)


def _legacy_exporter_kwargs() -> dict:
    """``dynamo=False`` (the TorchScript-based exporter this graph is written for) where torch.onnx.export has
    the keyword (torch >= 2.5; later versions default to the dynamo exporter); nothing for older torch (the
    torch builds NVIDIA ships for JetPack 6 can be older), where the TorchScript exporter is the only one."""
    try:
        params = inspect.signature(torch.onnx.export).parameters
    except (TypeError, ValueError):  # no introspectable signature: assume a current torch
        return {"dynamo": False}
    return {"dynamo": False} if "dynamo" in params else {}


def _add_metadata(data: bytes, ckpt: Checkpoint, include_backbone: bool, precision: str, score_type: str,
                  extra: dict | None = None) -> bytes:
    """Record what the model is in its metadata_props and check the model with onnx.checker."""
    import onnx

    model = onnx.load_from_string(data)
    sc = ckpt.score_config
    meta = {"lfdn_edge_version": __version__, "precision": precision, "score_type": score_type,
            "includes_backbone": str(bool(include_backbone)).lower(),
            "stage_dims": ",".join(str(d) for d in ckpt.layout.stage_dims),
            "score": f"t={sc.t},steps={sc.steps},eta={sc.eta},seed={sc.seed},convention={sc.convention}"}
    meta.update(extra or {})
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "lfdn-edge"
    model.producer_version = __version__
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(ckpt: Checkpoint | str | os.PathLike, path: str | os.PathLike, include_backbone: bool = False,
                precision: str = "fp32", opset: int = DEFAULT_OPSET, score_type: str = defaults.SCORE_TYPE,
                image_size=None) -> Path:
    """Write the scoring graph as ONNX to ``path`` (atomically). Input ``features`` (N, C) float32, or ``images``
    (N, H, W, 3) uint8 with ``include_backbone``; outputs score, mse, mfsim (N,) and stage_cos (N, M), float32."""
    data = onnx_bytes(ckpt, include_backbone, precision, opset, score_type, image_size)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


# ---------------------------------------------------------------------------------------------- INT8 (Q/DQ)
def synthetic_calibration(ckpt: Checkpoint, n: int = INT8_CALIBRATION_N, seed: int = INT8_CALIBRATION_SEED) -> np.ndarray:
    """(n, C) float32 calibration vectors from the checkpoint alone: per stage, Gaussian vectors plus a per-row
    offset, standardised over the stage's channels (mean 0, variance 1 per sample and stage, as
    :func:`lfdn_edge.features.standardise` makes real features)."""
    rng = np.random.default_rng(seed)
    parts = []
    for d in ckpt.layout.stage_dims:
        f = rng.standard_normal((n, d)) + rng.standard_normal((n, 1))
        parts.append((f - f.mean(1, keepdims=True)) / np.sqrt(f.var(1, keepdims=True) + 1e-5))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def check_calibration(ckpt: Checkpoint, x) -> np.ndarray:
    """The calibration vectors as float32 (N, C), or ValueError saying what is wrong with them."""
    dim = ckpt.layout.dim
    try:
        a = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - ragged lists and other non-arrays
        raise ValueError(f"INT8 calibration data must be an array of feature vectors (N, {dim}): {exc}") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"INT8 calibration data must be numeric feature vectors (N, {dim}), got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f"INT8 calibration data must have shape (N, {dim}) (the checkpoint's feature size), "
                         f"got {a.shape}")
    if a.shape[0] < INT8_CALIBRATION_MIN:
        raise ValueError(f"INT8 calibration needs at least {INT8_CALIBRATION_MIN} feature vectors, got {a.shape[0]}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError("INT8 calibration data holds NaN or inf")
    return a


def _linear_names(graph) -> list[str]:
    lf = graph.lfdn
    return (["inp"] + [f"fc{k}.{j}" for j in range(len(lf.fc1)) for k in (1, 2)] + ["out"])


def calibrate_activations(ckpt: Checkpoint, x: np.ndarray, method: str = INT8_ACT_METHOD,
                          percentile: float = INT8_ACT_PERCENTILE, score_type: str = defaults.SCORE_TYPE,
                          batch: int = 256) -> dict[str, list[float]]:
    """{layer name: [statistic of |input| per DDIM level]}: the FP32 scoring graph run in torch on ``x``, each
    LFDN Linear's input recorded per call (call i of a layer is level i); "max": the max |a|, "percentile":
    that percentile of |a| over all elements of all vectors."""
    if method not in INT8_ACT_METHODS:
        raise ValueError(f"activation calibration method must be one of {INT8_ACT_METHODS}, got {method!r}")
    if not 0.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    graph = build_graph(ckpt, False, "fp32", score_type)
    names = _linear_names(graph)
    mods = {"inp": graph.lfdn.inp, "out": graph.lfdn.out}
    for j in range(len(graph.lfdn.fc1)):
        mods[f"fc1.{j}"], mods[f"fc2.{j}"] = graph.lfdn.fc1[j], graph.lfdn.fc2[j]
    levels = len(graph.levels)
    seen: dict[str, list[list[np.ndarray]]] = {n: [] for n in names}

    def hook(name):
        def pre(_module, args):
            seen[name].append(args[0].detach().abs().float().reshape(-1).numpy().copy())
        return pre

    handles = [mods[n].register_forward_pre_hook(hook(n)) for n in names]
    per: dict[str, list[list[np.ndarray]]] = {n: [[] for _ in range(levels)] for n in names}
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                for n in names:
                    seen[n] = []
                graph(torch.from_numpy(x[s:s + batch]))
                for n in names:
                    if len(seen[n]) != levels:
                        raise RuntimeError(f"layer {n} ran {len(seen[n])} times in one pass, expected {levels}")
                    for i, v in enumerate(seen[n]):
                        per[n][i].append(v)
    finally:
        for h in handles:
            h.remove()
    out: dict[str, list[float]] = {}
    for n in names:
        stats = []
        for i in range(levels):
            v = np.concatenate(per[n][i])
            stats.append(float(v.max() if method == "max" else np.percentile(v, float(percentile))))
        out[n] = stats
    return out


def onnx_int8_qdq(ckpt: Checkpoint | str | os.PathLike, calibration: ArrayLike | None = None,
                  method: str = INT8_ACT_METHOD,
                  percentile: float = INT8_ACT_PERCENTILE, opset: int = DEFAULT_OPSET,
                  score_type: str = defaults.SCORE_TYPE, calibration_source: str | None = None) -> tuple[bytes, dict]:
    """(ONNX bytes, header entry ``int8``) of the explicitly quantized (Q/DQ) features scoring graph (module doc).

    ``calibration``: feature vectors (N, C), N >= 16, finite; None: :func:`synthetic_calibration` (512 vectors
    from the checkpoint alone). ``calibration_source`` describes given vectors in the header (default "given
    feature vectors"). The header entry records the weight scheme, the activation scheme, every activation
    scale (per layer, one per DDIM level) and the calibration (source, count, method)."""
    import onnx
    from onnx import helper, numpy_helper

    ckpt = as_checkpoint(ckpt)
    if calibration is None:
        x = synthetic_calibration(ckpt)
        source = (f"synthetic: {len(x)} per-stage standardised Gaussian vectors (seed {INT8_CALIBRATION_SEED}) from "
                  "the checkpoint's layout (the checkpoint stores no feature statistics)")
    else:
        x = check_calibration(ckpt, calibration)
        source = calibration_source or "given feature vectors"
    stats = calibrate_activations(ckpt, x, method, percentile, score_type)
    model = onnx.load_from_string(onnx_bytes(ckpt, False, "fp32", opset, score_type))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    ema = ckpt.build_model("ema")
    sd = {k: v.detach().float().numpy() for k, v in ema.state_dict().items()}

    new_nodes, weight_info, act_scales = [], {}, {}
    for layer in stats:
        wname = f"lfdn.{layer}.weight"
        if wname not in inits:
            raise RuntimeError(f"the exported graph has no initializer {wname}; the Q/DQ rewrite does not know it")
        w = numpy_helper.to_array(inits[wname])
        if not np.array_equal(w, sd[f"{_module_path(layer)}.weight"]):
            raise RuntimeError(f"initializer {wname} is not the checkpoint's {layer} weight")
        q, scale = quantize_weight_int8(w)
        g.initializer.remove(inits[wname])
        g.initializer.extend([numpy_helper.from_array(q, f"{wname}_quantized"),
                              numpy_helper.from_array(scale, f"{wname}_scale"),
                              numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{wname}_zero_point")])
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{wname}_quantized", f"{wname}_scale",
                                                               f"{wname}_zero_point"], [wname], axis=0,
                                          name=f"/lfdn/{layer}/weight_DequantizeLinear"))
        weight_info[layer] = {"shape": list(q.shape)}
    gemms: dict[str, list] = {layer: [] for layer in stats}
    for node in g.node:
        if node.op_type == "Gemm" and len(node.input) > 1 and node.input[1].startswith("lfdn."):
            layer = node.input[1][len("lfdn."):-len(".weight")]
            if layer in gemms:
                gemms[layer].append(node)
    for layer, nodes in gemms.items():
        if len(nodes) != len(stats[layer]):
            raise RuntimeError(f"layer {layer}: {len(nodes)} Gemm nodes in the graph, {len(stats[layer])} levels "
                               "calibrated")
        for i, node in enumerate(nodes):
            if not any(a.name == "transB" and a.i == 1 for a in node.attribute):
                raise RuntimeError(f"{node.name}: expected Gemm(transB=1) for a Linear")
            sc = np.float32(stats[layer][i] / QMAX) if stats[layer][i] > 0 else np.float32(1.0)
            key = f"{layer}@{i}"
            act_scales[key] = float(sc)
            base = f"/lfdn/{layer}/act{i}"
            g.initializer.extend([numpy_helper.from_array(np.array(sc, np.float32), f"{base}_scale"),
                                  numpy_helper.from_array(np.array(0, np.int8), f"{base}_zero_point")])
            src = node.input[0]
            qn = helper.make_node("QuantizeLinear", [src, f"{base}_scale", f"{base}_zero_point"], [f"{base}_q"],
                                  name=f"{base}_QuantizeLinear")
            dq = helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zero_point"],
                                  [f"{base}_dq"], name=f"{base}_DequantizeLinear")
            node.input[0] = f"{base}_dq"
            _insert_before(g, node, [qn, dq])
    for nd in reversed(new_nodes):
        g.node.insert(0, nd)
    del g.value_info[:]  # shapes of rewritten tensors: let consumers infer them again
    del model.metadata_props[:]  # the FP32 export's; written again below with precision int8
    info = {
        "weight_scheme": WEIGHT_SCHEME,
        "weights": "int8 initializer <lfdn.layer.weight>_quantized (out, in) with float32 per-output-channel scale "
                   "<...>_scale = lfdn_edge.builder.quantize.quantize_weight_int8, DequantizeLinear(axis=0), zero "
                   "point 0",
        "activation_scheme": ACTIVATION_SCHEME,
        "activations": "QuantizeLinear/DequantizeLinear int8, zero point 0, one static scale per Linear and DDIM "
                       "level (TensorRT needs static scales; the native CPU engine uses dynamic per-row scales)",
        "activation_scales": act_scales,
        "calibration": {"source": source, "n": int(len(x)), "method": method,
                        "percentile": float(percentile) if method == "percentile" else None,
                        "statistic": "max |a|" if method == "max" else f"{percentile}th percentile of |a|"},
        "layers": weight_info,
    }
    data = _add_metadata(model.SerializeToString(), ckpt, False, "int8", score_type,
                         {"int8_weight_scheme": WEIGHT_SCHEME, "int8_activation_scheme": ACTIVATION_SCHEME,
                          "int8_calibration": json.dumps(info["calibration"], sort_keys=True)})
    return data, info


def _module_path(layer: str) -> str:
    """The LFDN state-dict prefix of a scoring-graph layer name (inp, fc1.j, fc2.j, out)."""
    if layer in ("inp", "out"):
        return layer
    kind, j = layer.split(".")
    return f"blocks.{j}.{kind}"


def _insert_before(graph, node, new) -> None:
    for k, nd in enumerate(graph.node):
        if nd is node or (nd.name == node.name and nd.output == node.output):
            for m, x in enumerate(new):
                graph.node.insert(k + m, x)
            return
    raise RuntimeError(f"node {node.name} not found")
