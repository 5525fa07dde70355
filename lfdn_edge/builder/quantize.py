"""INT8 weight quantization shared by every INT8 engine (native CPU, CUDA, ONNX/TensorRT Q/DQ).

Scheme ``w8-per-channel-symmetric``: every Linear weight (out, in) is stored as int8 ``q`` with one float32
scale per output channel, ``w[n, k] ~= q[n, k] * scale[n]``, ``scale[n] = max_k |w[n, k]| / 127`` (a row of
zeros gets scale 1 and q = 0), ``q = round_half_even(w / scale)`` clipped to [-127, 127] (never -128, so
``-q`` is representable and the zero point is 0). The division is done in float64 and rounded once, so the
result does not depend on numpy's float32 rounding order. Every INT8 backend reads these arrays as they are:
the native engines, the CUDA weight-streaming tactic and the ONNX Q/DQ graph quantize the same way.

The activations are quantized by each engine at run time (docs/NATIVE.md "INT8"): the native CPU engine per row
(dynamic, symmetric, scale = max|a| / 127 of the row); the ONNX Q/DQ graph with static per-tensor scales.
"""

from __future__ import annotations

import numpy as np

WEIGHT_SCHEME = "w8-per-channel-symmetric"
QMAX = 127


def quantize_weight_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 (out, in), scale float32 (out,)) of a float weight (out, in), the scheme above.

    Raises ValueError for a weight that is not 2-D or holds NaN or inf (an INT8 scale cannot represent them)."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"an INT8 weight must be 2-D (out, in), got shape {w.shape}")
    w64 = w.astype(np.float64)
    if not np.isfinite(w64).all():
        raise ValueError("cannot quantize a weight holding NaN or inf to INT8")
    amax = np.abs(w64).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
    scale = (amax / QMAX).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.rint(w64 / scale.astype(np.float64)[:, None])
    q = np.clip(q, -QMAX, QMAX).astype(np.int8)
    return np.ascontiguousarray(q), np.ascontiguousarray(scale)


def dequantize_weight_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """float32 (out, in) = q * scale[:, None] (exact in float64, rounded once to float32)."""
    return (np.asarray(q, np.float64) * np.asarray(scale, np.float64)[:, None]).astype(np.float32)
