"""The native engine payload layout: how a spec (scalars and arrays) becomes header["native"] + bytes.

Written by the build side (:mod:`lfdn_edge.builder.native_payload`, which computes the spec from a checkpoint)
and read by the run side (:mod:`lfdn_edge.runtime.backends.native_backend`); this module is the only one that
knows the byte layout. Each array is 64-byte aligned, little-endian, in the order of header["native"]
["tensors"] (name, dtype, shape, offset, nbytes); per-block arrays are named ``<name>.<block>``.
"""

from __future__ import annotations

import numpy as np

from .file import EngineError

NATIVE_FORMAT = 1
ALIGN = 64
SCALARS = ("in_dim", "width", "depth", "steps", "precision", "seed", "q_a", "q_b", "gn_eps", "cos_eps",
           "stage_offsets")
PER_BLOCK = ("fc1_w", "fc2_w", "gn1_g", "gn1_b", "gn2_g", "gn2_b", "fc2_b", "fc1_w_scale", "fc2_w_scale")
# optional scalars: INT8 engines record their weight scheme (lfdn_edge.builder.quantize.WEIGHT_SCHEME)
OPTIONAL_SCALARS = ("weight_scheme",)
INT8_PER_BLOCK = ("fc1_w_scale", "fc2_w_scale")


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
        if a.dtype not in (np.float32, np.float16, np.uint16, np.int8):
            raise ValueError(f"native spec array {name} has dtype {a.dtype}; expected float32, float16, "
                             "uint16 (BF16 bits) or int8")
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
            **{k: spec[k] for k in OPTIONAL_SCALARS if k in spec},
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
        spec.update({k: meta[k] for k in OPTIONAL_SCALARS if k in meta})
        _check_scalar_types(spec)
        buf = memoryview(payload)
        for t in meta["tensors"]:
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not isinstance(t.get("shape"), list) \
                    or not all(_is_int(d) and d >= 0 for d in t["shape"]) \
                    or not all(_is_int(t.get(k)) and t[k] >= 0 for k in ("offset", "nbytes")):
                raise EngineError(f"{source}: malformed native tensor entry {str(t)[:120]}; rebuild the engine")
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
            if k not in INT8_PER_BLOCK or spec["precision"] == "int8":
                spec.setdefault(k, [])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, EngineError):
            raise
        raise EngineError(f"{source}: malformed native engine header ({exc!r}); rebuild the engine") from exc
    return spec


INT_SCALARS = ("in_dim", "width", "depth", "steps", "seed")
FLOAT_SCALARS = ("q_a", "q_b", "gn_eps", "cos_eps")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_scalar_types(spec: dict) -> None:
    """The scalars have the JSON types the core's binding takes (else pybind11 fails with an unclear cast error)."""
    bad = [k for k in INT_SCALARS if not _is_int(spec[k])]
    bad += [k for k in FLOAT_SCALARS if not (isinstance(spec[k], (int, float)) and not isinstance(spec[k], bool))]
    if not isinstance(spec["precision"], str):
        bad.append("precision")
    offsets = spec["stage_offsets"]
    if not isinstance(offsets, list) or not all(_is_int(o) for o in offsets):
        bad.append("stage_offsets")
    if bad:
        raise TypeError(f"native scalars of the wrong type: {', '.join(bad)}")
