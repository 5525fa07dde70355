"""The part of an engine header that every backend shares, derived from a checkpoint."""

from __future__ import annotations

from .. import defaults
from ..checkpoint import Checkpoint
from ..diffusion import chain_levels
from ..scoring_graph import SCORE_OUTPUTS, input_spec

ENGINE_SCORE_TYPES = ("mfsim", "mse")  # LR needs two models; engines carry one (the EMA weights)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
INT8_BACKENDS = ("native", "onnx", "tensorrt")
# the header entry "int8" of ONNX / TensorRT INT8 engines (explicit quantization, lfdn_edge.builder.onnx_export)
INT8_HEADER_KEYS = ("weight_scheme", "activation_scheme", "activation_scales", "calibration")


def check_batch_range(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    lo, opt, hi = (int(b) for b in batch)
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"batch range must satisfy 1 <= min <= opt <= max, got {lo},{opt},{hi}")
    return lo, opt, hi


def common_header(ckpt: Checkpoint, backend: str, precision: str, batch: tuple[int, int, int],
                  includes_backbone: bool, score_type: str | None = None) -> dict:
    """Header entries every engine carries: what was built, from what, for which inputs and scores."""
    score_type = score_type or defaults.SCORE_TYPE
    if score_type not in ENGINE_SCORE_TYPES:
        raise ValueError(f"engine score type must be one of {ENGINE_SCORE_TYPES}, got {score_type!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be fp32, fp16, bf16 or int8, got {precision!r}")
    if precision == "bf16" and backend != "native":
        raise ValueError(f"precision bf16 is an option of the native CPU engine (AVX512_BF16), not of the "
                         f"{backend} backend; use fp32 or fp16")
    if precision == "int8" and backend not in INT8_BACKENDS:
        raise ValueError(f"precision int8 is built by the {', '.join(INT8_BACKENDS)} backends, not by {backend}")
    lo, opt, hi = check_batch_range(batch)
    sc = ckpt.score_config
    cal = ckpt.calibration or {}
    return {
        "backend": backend,
        "precision": precision,
        "batch": {"min": lo, "opt": opt, "max": hi},
        "includes_backbone": bool(includes_backbone),
        "layout": ckpt.data["layout"],
        "feature": ckpt.data["feature"],
        "preprocessing": ckpt.data.get("preprocessing"),
        "model": ckpt.data["model"],
        "diffusion": ckpt.data["diffusion"],
        "score": sc.to_dict(),
        "ddim_levels": chain_levels(sc.t, sc.steps, sc.convention),
        "score_type": score_type,
        "threshold": cal.get("thresholds", {}).get(score_type),
        "thresholds": {k: v for k, v in cal.get("thresholds", {}).items() if k in ENGINE_SCORE_TYPES},
        "calibration_tpr": cal.get("tpr"),
        "source_checkpoint_version": ckpt.data.get("lfdn_edge_version"),
    }


def engine_header(ckpt: Checkpoint, backend: str, precision: str, batch: tuple[int, int, int],
                  include_backbone: bool, score_type: str | None = None, image_size=None) -> dict:
    """common_header plus what the graph takes and returns: input spec (name, dtype, shape), outputs and,
    for engines that include the backbone, the frame size."""
    if image_size is not None and not include_backbone:
        raise ValueError("an image size applies only to engines that include the backbone (--include-backbone)")
    header = common_header(ckpt, backend, precision, batch, include_backbone, score_type)
    spec = input_spec(ckpt, include_backbone, image_size)
    header["input"] = spec
    header["outputs"] = list(SCORE_OUTPUTS)
    if include_backbone:
        header["image_size"] = spec["shape"][1:3]
    return header


def int8_entry(info: dict) -> dict:
    """The header entry ``int8`` of an ONNX / TensorRT INT8 engine, checked: weight_scheme (the scheme of
    lfdn_edge.builder.quantize), activation_scheme, activation_scales ({"<layer>@<level>": scale > 0}: the static
    per-tensor scale of each Linear's input at each DDIM level) and calibration ({source, n, method, ...}).
    ValueError when one is missing or a scale is not a positive finite number."""
    missing = [k for k in INT8_HEADER_KEYS if k not in info]
    if missing:
        raise ValueError(f"INT8 header entry lacks {missing}")
    bad = {k: v for k, v in info["activation_scales"].items() if not (isinstance(v, float) and 0.0 < v < float("inf"))}
    if bad:
        raise ValueError(f"INT8 activation scales must be positive finite floats: {bad}")
    return dict(info)
