"""Build an engine artifact from a checkpoint: the backend dispatcher behind tools/build_engine.py.

Backends (the payload of the artifact):
    tensorrt  a TensorRT / TensorRT-RTX plan (lfdn_edge.builder.tensorrt_builder), run by the tensorrt backend
    native    packed weights for the C++/CUDA core (lfdn_edge.builder.native_payload), run by the native backend
    onnx      the ONNX model bytes (lfdn_edge.builder.onnx_export), run by onnxruntime
    torch     the checkpoint's scoring tensors, run by the PyTorch reference graph (Python API only)
``auto`` picks tensorrt when a TensorRT module is importable and a GPU is present, else native when the
native core is built, else onnx. Precision defaults to fp16 for tensorrt and fp32 otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from numpy.typing import ArrayLike

from ..artifact.file import EngineArtifact, write_engine
from ..artifact.header import ENGINE_SCORE_TYPES, check_batch_range, engine_header
from ..checkpoint import Checkpoint
from ..probes import native_usable, onnx_usable, tensorrt_usable
from ..scoring_graph import as_checkpoint
from .onnx_export import DEFAULT_OPSET, onnx_bytes
from ..errors import UnavailableError
from .. import defaults

BUILD_BACKENDS = ("tensorrt", "native", "onnx", "torch")
DEFAULT_BATCH = defaults.ENGINE_BATCH
DEFAULT_WORKSPACE_MB = defaults.WORKSPACE_MB


def _native_for(include_backbone: bool) -> tuple[bool, str]:
    if include_backbone:
        return False, "native engines score features and cannot include the backbone"
    return native_usable()


def choose_backend(backend: str = "auto", include_backbone: bool = False) -> tuple[str, str]:
    """(backend, why): resolve ``auto`` to tensorrt, native or onnx, the first that can build what was asked
    here (native cannot include the backbone), saying why the others were skipped."""
    if backend != "auto":
        if backend not in BUILD_BACKENDS:
            raise ValueError(f"backend must be one of {('auto',) + BUILD_BACKENDS}, got {backend!r}")
        return backend, "requested"
    skipped: list[str] = []
    probes = (("tensorrt", tensorrt_usable), ("native", lambda: _native_for(include_backbone)), ("onnx", onnx_usable))
    for name, probe in probes:
        ok, why = probe()
        if ok:
            return name, "auto" + (f" (skipped {'; '.join(skipped)})" if skipped else "")
        skipped.append(f"{name}: {why}")
    raise UnavailableError("no backend can build an engine here: " + "; ".join(skipped))


def default_output(ckpt_path: str | os.PathLike, backend: str, precision: str, include_backbone: bool) -> Path:
    """``<ckpt dir>/<ckpt stem>.<backend>.<precision>.engine`` (``.image.engine`` with the backbone inside)."""
    p = Path(ckpt_path)
    return p.with_name(f"{p.stem}.{backend}.{precision}{'.image' if include_backbone else ''}.engine")


def build_artifact(ckpt: Checkpoint | str | os.PathLike, backend: str, precision: str = "fp32",
                   batch: tuple[int, int, int] = DEFAULT_BATCH, include_backbone: bool = False,
                   timing_cache: str | os.PathLike | None = None, workspace_mb: int | None = None,
                   image_size: tuple[int, int] | None = None, score_type: str | None = None,
                   opset: int = DEFAULT_OPSET, trt_flavor: str = defaults.TRT_FLAVOR,
                   compute_capabilities: list[str] | None = None,
                   log: Callable[[str], None] = lambda s: None,
                   int8_calibration: ArrayLike | None = None) -> EngineArtifact:
    """Build the header and payload in memory (no file). ``backend`` must be concrete (see choose_backend).

    Precision int8 with onnx / tensorrt: the explicitly quantized (Q/DQ) graph of
    :func:`lfdn_edge.builder.onnx_export.onnx_int8_qdq`, activation scales calibrated on ``int8_calibration``
    (feature vectors (N, C)) or, None, on vectors drawn from the checkpoint alone; the header's ``int8`` entry
    records the weight scheme, the activation scales and the calibration.

    ``workspace_mb`` and ``timing_cache`` apply to TensorRT only (a note is logged when given for another
    backend); ``workspace_mb`` None means DEFAULT_WORKSPACE_MB. ``score_type`` None: defaults.SCORE_TYPE.
    """
    if backend not in BUILD_BACKENDS:
        raise ValueError(f"backend must be one of {BUILD_BACKENDS}, got {backend!r}")
    ckpt = as_checkpoint(ckpt)
    batch = check_batch_range(batch)
    score_type = score_type or defaults.SCORE_TYPE
    if score_type not in ENGINE_SCORE_TYPES:
        raise ValueError(f"score type must be one of {ENGINE_SCORE_TYPES}, got {score_type!r}")
    if backend != "tensorrt":
        for value, option in ((timing_cache, "--timing-cache"), (workspace_mb, "--workspace")):
            if value is not None:
                log(f"note: {option} applies to TensorRT builds only; ignored for the {backend} backend")
    elif workspace_mb is None:
        workspace_mb = DEFAULT_WORKSPACE_MB
    header = engine_header(ckpt, backend, precision, batch, include_backbone, score_type, image_size)
    spec = header["input"]

    if precision == "int8" and backend in ("onnx", "tensorrt") and include_backbone:
        raise ValueError("INT8 ONNX/TensorRT engines score features (the Q/DQ graph quantizes the LFDN's Linear "
                         "layers, not the backbone); build without --include-backbone")
    if int8_calibration is not None and not (precision == "int8" and backend in ("onnx", "tensorrt")):
        raise ValueError("INT8 calibration data applies to int8 onnx/tensorrt builds only")

    def onnx_for(prec: str) -> bytes:
        if prec == "int8":
            from .onnx_export import onnx_int8_qdq
            from ..artifact.header import int8_entry

            data, info = onnx_int8_qdq(ckpt, int8_calibration, opset=opset, score_type=score_type)
            header["int8"] = int8_entry(info)
            return data
        return onnx_bytes(ckpt, include_backbone, prec, opset, score_type, image_size)

    if backend == "onnx":
        payload = onnx_for(precision)
        header["onnx_opset"] = int(opset)
    elif backend == "torch":
        from .torch_payload import pack_checkpoint

        payload = pack_checkpoint(ckpt)
    elif backend == "native":
        from .native_payload import build_native_artifact

        extras, payload = build_native_artifact(ckpt, precision, batch, include_backbone)
        header.update(extras)
    else:
        from .tensorrt_builder import build_tensorrt_plan

        payload, extras = build_tensorrt_plan(onnx_for, spec["name"], tuple(spec["shape"][1:]), batch, precision,
                                              trt_flavor, timing_cache, workspace_mb, compute_capabilities, log)
        header.update(extras)
        header["onnx_opset"] = int(opset)
    return EngineArtifact(header, bytes(payload), None)


def build_engine(ckpt_path: str | os.PathLike, backend: str = "auto", precision: str | None = None,
                 batch: tuple[int, int, int] = DEFAULT_BATCH, include_backbone: bool = False,
                 timing_cache: str | os.PathLike | None = None, workspace_mb: int | None = None,
                 out: str | os.PathLike | None = None, image_size: tuple[int, int] | None = None,
                 score_type: str | None = None, opset: int = DEFAULT_OPSET, trt_flavor: str = defaults.TRT_FLAVOR,
                 compute_capabilities: list[str] | None = None,
                 log: Callable[[str], None] = lambda s: None) -> Path:
    """Build an engine artifact from ``ckpt_path`` and write it (atomically); returns its path.

    ``precision`` None: fp16 for tensorrt, fp32 for the CPU-capable backends. ``precision`` "bf16" is a native
    CPU engine option: with backend "auto" it selects native.
    """
    ckpt_path = Path(ckpt_path)
    ckpt = Checkpoint.load(ckpt_path)
    if precision in ("bf16", "int8") and backend == "auto":  # CPU precisions of the native engine
        backend = "native"
    backend, why = choose_backend(backend, include_backbone)
    log(f"backend: {backend} ({why})")
    precision = precision or ("fp16" if backend == "tensorrt" else "fp32")
    artifact = build_artifact(ckpt, backend, precision, batch, include_backbone, timing_cache, workspace_mb,
                              image_size, score_type, opset, trt_flavor, compute_capabilities, log)
    out = Path(out) if out is not None else default_output(ckpt_path, backend, precision, include_backbone)
    path = write_engine(out, artifact.header, artifact.payload)
    log(f"wrote {path} ({describe(artifact.header)})")
    return path


def describe(h: dict) -> str:
    """One line about an engine header: backend, precision, batch range, input, score, threshold, TensorRT target."""
    inp = h["input"]
    extra = ""
    if h["backend"] == "tensorrt":
        cc = h["compute_capability"] or "TensorRT-RTX portable default (Ampere and later)"
        extra = (f", {h['trt_flavor']} {h['tensorrt_version']}, compute capability {cc}"
                 f"{', built without a GPU' if h.get('built_without_gpu') else ''}")
    return (f"{h['backend']}, {h['precision']}, batch {h['batch']['min']}..{h['batch']['max']}, "
            f"input {inp['name']} {inp['dtype']} {tuple(inp['shape'])}, score {h['score_type']}, "
            f"threshold {h['threshold']}{extra}")
