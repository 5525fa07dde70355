"""The torch engine payload: the part of a checkpoint that scoring needs, serialised with torch.save.

Read back by :func:`lfdn_edge.runtime.backends.torch_backend.unpack_checkpoint` (``weights_only=True``).
"""

from __future__ import annotations

import io

import torch

from ..checkpoint import FORMAT, FORMAT_VERSION, Checkpoint

SCORING_KEYS = ("feature", "preprocessing", "layout", "model", "diffusion", "score", "ema", "calibration",
                "lfdn_edge_version")


def pack_checkpoint(ckpt: Checkpoint) -> bytes:
    """The scoring subset of a checkpoint as bytes (no optimizer state, no early snapshot)."""
    data = {k: ckpt.data.get(k) for k in SCORING_KEYS}
    data.update(format=FORMAT, format_version=FORMAT_VERSION)
    buf = io.BytesIO()
    torch.save(data, buf)
    return buf.getvalue()
