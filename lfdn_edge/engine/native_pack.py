"""Native engine payload: the LFDN's weights packed for lfdn_edge._C, with the timestep branch folded.

For a fixed score config the timestep embedding of every DDIM level is a constant, so each block's
``fc1.bias + emb(SiLU(time_embed(level)))`` is computed here once per (step, block) in PyTorch FP32 and
stored as one folded bias (:meth:`LFDN.level_biases`); the time-embedding MLP is not part of the engine. The
forward-noising and DDIM coefficients come from :class:`lfdn_edge.score.DdimPlan`, the same constants the
ONNX graph bakes in, computed as the PyTorch reference computes them. The Philox noise itself is not stored: the engine
regenerates it from the seed (stream 0 and one stream per DDIM update, image key 0).

Payload: the arrays of the spec, each 64-byte aligned, little-endian, in the order of header["native"]
["tensors"] (name, dtype, shape, offset). Weights are (out, in) row-major as in torch.nn.Linear, stored
FP32 (precision "fp32") or FP16 (precision "fp16": FP16 storage, FP32 arithmetic on the CPU, tensor cores
with FP32 accumulation on CUDA); every other array is FP32. The packing into kernel layouts (CPU column
panels, CUDA padded FP16) happens when the engine is loaded, so one artifact runs on either device.
"""

from __future__ import annotations

import numpy as np
import torch

from ..checkpoint import Checkpoint
from ..diffusion import Schedule
from ..features import FeatureLayout
from ..model import GN_EPS, LFDN
from ..score import COS_EPS, DdimPlan, ScoreConfig
from .artifact import EngineError

NATIVE_FORMAT = 1
ALIGN = 64
PRECISIONS = ("fp32", "fp16")
SCALARS = ("in_dim", "width", "depth", "steps", "precision", "seed", "q_a", "q_b", "gn_eps", "cos_eps",
           "stage_offsets")
PER_BLOCK = ("fc1_w", "fc2_w", "gn1_g", "gn1_b", "gn2_g", "gn2_b", "fc2_b")


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

    def weight(lin: torch.nn.Linear) -> np.ndarray:
        return np.ascontiguousarray(_f32(lin.weight).astype(wdt))

    plan = DdimPlan(schedule, score)
    levels = plan.levels
    # folded fc1 biases: (steps, depth, width) = fc1.bias + the block's timestep term at each level
    fc1_bias = _f32(model.level_biases(levels) + torch.stack([b.fc1.bias for b in model.blocks])[None])
    fc1_bias = fc1_bias.reshape(len(levels), cfg.depth, cfg.width)
    coef = np.asarray(plan.updates, dtype=np.float32).reshape(len(levels) - 1, 5)
    blocks = list(model.blocks)
    return {
        "in_dim": int(cfg.in_dim), "width": int(cfg.width), "depth": int(cfg.depth), "steps": len(levels),
        "precision": precision, "seed": int(score.seed),
        "q_a": plan.q_a, "q_b": plan.q_b,
        "gn_eps": float(GN_EPS), "cos_eps": float(COS_EPS),
        "stage_offsets": [int(o) for o in layout.offsets],
        "coef": coef,
        "inp_w": weight(model.inp), "inp_b": _f32(model.inp.bias),
        "fc1_w": [weight(b.fc1) for b in blocks], "fc2_w": [weight(b.fc2) for b in blocks],
        "gn1_g": [_f32(b.norm1.weight) for b in blocks], "gn1_b": [_f32(b.norm1.bias) for b in blocks],
        "gn2_g": [_f32(b.norm2.weight) for b in blocks], "gn2_b": [_f32(b.norm2.bias) for b in blocks],
        "fc2_b": [_f32(b.fc2.bias) for b in blocks],
        "fc1_bias": fc1_bias,
        "out_g": _f32(model.out_norm.weight), "out_b": _f32(model.out_norm.bias),
        "out_w": weight(model.out), "out_bias": _f32(model.out.bias),
    }


def spec_from_checkpoint(ckpt: Checkpoint, precision: str = "fp32") -> dict:
    return native_spec(ckpt.build_model("ema"), Schedule(ckpt.diffusion_config), ckpt.score_config,
                       ckpt.layout, precision)


def _tensor_items(spec: dict):
    for name, value in spec.items():
        if isinstance(value, np.ndarray):
            yield name, value
        elif name in PER_BLOCK:
            for i, a in enumerate(value):
                yield f"{name}.{i}", a


def pack_spec(spec: dict) -> tuple[dict, bytes]:
    """(header["native"] entry, payload bytes) of a spec."""
    tensors, chunks, offset = [], [], 0
    for name, a in _tensor_items(spec):
        a = np.ascontiguousarray(a)
        if a.dtype not in (np.float32, np.float16):
            raise ValueError(f"native spec array {name} has dtype {a.dtype}; expected float32 or float16")
        pad = (-offset) % ALIGN
        if pad:
            chunks.append(b"\0" * pad)
            offset += pad
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        tensors.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
                        "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    meta = {"format": NATIVE_FORMAT, "tensors": tensors, **{k: spec[k] for k in SCALARS},
            "weights_layout": "torch.nn.Linear (out, in) row-major; packed for the device at load time",
            "folded": "fc1_bias[step, block] = fc1.bias + emb(SiLU(time_embed(level_step)))"}
    return meta, b"".join(chunks)


def unpack_spec(meta: dict, payload: bytes, source: str = "engine") -> dict:
    """The spec back from header["native"] and the payload (numpy views on the payload, no copies)."""
    if not isinstance(meta, dict) or meta.get("format") != NATIVE_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise EngineError(f"{source}: native payload format {got!r}, this lfdn-edge reads {NATIVE_FORMAT}; "
                          "rebuild the engine with tools/build_engine.py --backend native")
    try:
        spec = {k: meta[k] for k in SCALARS}
        buf = memoryview(payload)
        for t in meta["tensors"]:
            dt = np.dtype(t["dtype"]).newbyteorder("<")
            count = int(np.prod(t["shape"], dtype=np.int64))
            if t["offset"] + count * dt.itemsize > len(buf) or count * dt.itemsize != t["nbytes"]:
                raise EngineError(f"{source}: native tensor {t['name']} lies outside the payload")
            a = np.frombuffer(buf, dtype=dt, count=count, offset=t["offset"]).reshape(t["shape"])
            name = t["name"]
            base, _, idx = name.partition(".")
            if base in PER_BLOCK and idx:
                spec.setdefault(base, []).append(a)
            else:
                spec[name] = a
        for k in PER_BLOCK:
            spec.setdefault(k, [])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, EngineError):
            raise
        raise EngineError(f"{source}: malformed native engine header ({exc!r}); rebuild the engine") from exc
    return spec


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
    return {"native": meta}, payload
