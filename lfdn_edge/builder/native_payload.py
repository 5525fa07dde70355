"""Native engine payload: the LFDN's weights packed for lfdn_edge._C, with the timestep branch folded.

For a fixed score config the timestep embedding of every DDIM level is a constant, so each block's
``fc1.bias + emb(SiLU(time_embed(level)))`` is computed here once per (step, block) in PyTorch FP32 and
stored as one folded bias (:meth:`LFDN.level_biases`); the time-embedding MLP is not part of the engine. The
forward-noising and DDIM coefficients come from :class:`lfdn_edge.diffusion.DdimPlan`, the same constants the
ONNX graph bakes in, computed as the PyTorch reference computes them: ``coef`` has one row per model evaluation (the
last maps the last x0 prediction and x to the reconstruction, so the scoring convention's choice of output is data)
and ``stage_weights`` holds the MFsim weight of each stage. The Philox noise itself is not stored: the engine
regenerates it from the seed (stream 0 and one stream per DDIM update, image key 0).

The payload layout (:mod:`lfdn_edge.artifact.native_layout`, shared with the native backend that reads it):
the arrays of the spec, each 64-byte aligned, little-endian, in the order of header["native"]
["tensors"] (name, dtype, shape, offset). Weights are (out, in) row-major as in torch.nn.Linear, stored
FP32 (precision "fp32"), FP16 (precision "fp16": FP16 storage, FP32 arithmetic on the CPU, tensor cores
with FP32 accumulation on CUDA) or BF16 (precision "bf16": uint16 arrays of BF16 bit patterns, FP32 rounded to
nearest even here; CPU engine only, on CPUs with AVX512_BF16, where the activations are rounded to BF16 too and
the products accumulate in FP32); every other array is FP32. The packing into kernel layouts (CPU column
panels, CUDA padded FP16) happens when the engine is loaded, so one artifact runs on either device.
"""

from __future__ import annotations

import numpy as np
import torch

from ..checkpoint import Checkpoint
from ..diffusion import Schedule
from ..features import FeatureLayout
from ..model import GN_EPS, LFDN
from ..artifact.native_layout import pack_spec
from ..diffusion import DdimPlan
from ..reference import COS_EPS, ScoreConfig, stage_weights
from .quantize import WEIGHT_SCHEME, quantize_weight_int8

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def f32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """BF16 bit patterns (uint16) of a float32 array, rounded to nearest even (as vcvtne2ps2bf16 rounds
    normal numbers); inf stays inf. NaN is refused (weights are finite)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if np.isnan(a).any():
        raise ValueError("cannot round NaN weights to BF16")
    b = a.view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """The float32 values of BF16 bit patterns (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())


@torch.no_grad()
def native_spec(model: LFDN, schedule: Schedule, score: ScoreConfig, layout: FeatureLayout,
                precision: str = "fp32") -> dict:
    """The engine spec lfdn_edge._C.CpuEngine / CudaEngine take: scalars and numpy arrays."""
    if precision not in PRECISIONS:
        raise ValueError(f"native precision must be one of {PRECISIONS}, got {precision!r}")
    cfg = model.config
    if cfg.in_dim != layout.dim:
        raise ValueError(f"model input size {cfg.in_dim} != feature layout size {layout.dim}")
    model = model.eval()
    wdt = np.float16 if precision == "fp16" else np.float32

    scales: dict[int, np.ndarray] = {}  # id(weight array) -> its INT8 per-output-channel scales

    def weight(lin: torch.nn.Linear) -> np.ndarray:
        if precision == "int8":
            q, s = quantize_weight_int8(_f32(lin.weight))
            scales[id(q)] = s
            return q
        if precision == "bf16":
            return f32_to_bf16_bits(_f32(lin.weight))
        return np.ascontiguousarray(_f32(lin.weight).astype(wdt))

    plan = DdimPlan(schedule, score)
    levels = plan.levels
    # folded fc1 biases: (steps, depth, width) = fc1.bias + the block's timestep term at each level
    fc1_bias = _f32(model.level_biases(levels) + torch.stack([b.fc1.bias for b in model.blocks])[None])
    fc1_bias = fc1_bias.reshape(len(levels), cfg.depth, cfg.width)
    # one row per model evaluation; the last (sigma 0) maps (x, x0_hat) to the reconstruction: the convention's
    # choice of output is data (project: the row (., ., 1, 0, 0), the last x0 prediction itself)
    coef = np.asarray(plan.updates, dtype=np.float32).reshape(len(levels), 5)
    weights = np.asarray(stage_weights(score, layout.num_stages), dtype=np.float32)
    blocks = list(model.blocks)
    spec = {
        "in_dim": int(cfg.in_dim), "width": int(cfg.width), "depth": int(cfg.depth), "steps": len(levels),
        "precision": precision, "seed": int(score.seed),
        "q_a": plan.q_a, "q_b": plan.q_b,
        "gn_eps": float(GN_EPS), "cos_eps": float(COS_EPS),
        "stage_offsets": [int(o) for o in layout.offsets],
        "coef": coef, "stage_weights": weights,
        "inp_w": weight(model.inp), "inp_b": _f32(model.inp.bias),
        "fc1_w": [weight(b.fc1) for b in blocks], "fc2_w": [weight(b.fc2) for b in blocks],
        "gn1_g": [_f32(b.norm1.weight) for b in blocks], "gn1_b": [_f32(b.norm1.bias) for b in blocks],
        "gn2_g": [_f32(b.norm2.weight) for b in blocks], "gn2_b": [_f32(b.norm2.bias) for b in blocks],
        "fc2_b": [_f32(b.fc2.bias) for b in blocks],
        "fc1_bias": fc1_bias,
        "out_g": _f32(model.out_norm.weight), "out_b": _f32(model.out_norm.bias),
        "out_w": weight(model.out), "out_bias": _f32(model.out.bias),
    }
    if precision == "int8":  # one float32 scale per output channel of every weight (builder/quantize.py)
        spec["weight_scheme"] = WEIGHT_SCHEME
        for key in ("inp_w", "out_w"):
            spec[key + "_scale"] = scales[id(spec[key])]
        for key in ("fc1_w", "fc2_w"):
            spec[key + "_scale"] = [scales[id(q)] for q in spec[key]]
    return spec

def spec_from_checkpoint(ckpt: Checkpoint, precision: str = "fp32") -> dict:
    return native_spec(ckpt.build_model("ema"), Schedule(ckpt.diffusion_config), ckpt.score_config,
                       ckpt.layout, precision)


def build_native_artifact(ckpt: Checkpoint, precision: str, batch: tuple[int, int, int],
                          include_backbone: bool) -> tuple[dict, bytes]:
    """Header extras (merged over common_header) and the payload of a native engine.

    Native engines score feature vectors (N, C); they do not include the backbone.
    """
    if include_backbone:
        raise ValueError("native engines score feature vectors and do not include the backbone: compute the "
                         "features with lfdn_edge.MultiLayerFeatures (PyTorch) and score them with a native "
                         "engine, or build an onnx/tensorrt engine with --include-backbone")
    if precision not in PRECISIONS:
        raise ValueError(f"native precision must be one of {PRECISIONS}, got {precision!r}")
    lo, _, hi = (int(b) for b in batch)
    if not 1 <= lo <= hi:
        raise ValueError(f"batch range must satisfy 1 <= min <= max, got {batch}")
    meta, payload = pack_spec(spec_from_checkpoint(ckpt, precision))
    extras: dict = {"native": meta}
    if precision == "int8":  # what the engine quantizes how (the scales themselves are payload tensors)
        extras["int8"] = {"weight_scheme": WEIGHT_SCHEME,
                          "weight_scales": "payload tensors <weight>_scale (float32, one per output channel)",
                          "activation_scheme": "dynamic per-row symmetric: scale = max|a| / 127 of each row at run "
                                               "time, INT32 accumulation (docs/NATIVE.md \"INT8\")"}
    return extras, payload
