"""PyTorch backend: runs :class:`~lfdn_edge.scoring_graph.ScoringGraph` (or ImageScoringGraph) in eager mode.

Its payload is the part of a checkpoint that scoring needs (feature/layout/model/diffusion/score configs, the
EMA weights, the calibration), serialised with torch.save: an artifact built with backend "torch", or made
in memory by ``Scorer(checkpoint_path)``. Runs on any torch device (``device="cuda"`` for a CUDA build);
torch tensors in give torch tensors out on the backend's device.
"""

from __future__ import annotations

import io

import torch

from ...checkpoint import FORMAT, Checkpoint
from ...artifact.file import EngineError
from .base import ScoreOutputs, ScoringBackend
from ...errors import UnavailableError

def unpack_checkpoint(payload: bytes, source: str = "engine") -> Checkpoint:
    try:
        data = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign bytes
        raise EngineError(f"{source}: the torch payload is not a readable checkpoint: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("ema") is None:
        raise EngineError(f"{source}: the torch payload is not an lfdn-edge checkpoint")
    return Checkpoint(data, None)


class TorchBackend(ScoringBackend):
    name = "torch"
    thread_safe = True  # concurrent run() calls are safe (see runtime/scorer.py, Threads)

    def __init__(self, artifact, device=None):
        super().__init__(artifact, device)
        from ...scoring_graph import build_graph

        h = self.header
        if h.get("backend") != "torch":
            raise EngineError(f"the torch backend runs torch payloads (a checkpoint), this engine holds a "
                              f"{h.get('backend')!r} payload")
        ckpt = artifact.checkpoint if artifact.checkpoint is not None else \
            unpack_checkpoint(artifact.payload, str(artifact.path or "engine"))
        image_size = tuple(h["image_size"]) if h.get("includes_backbone") and h.get("image_size") else None
        self.torch_device = torch.device(device) if device is not None else torch.device("cpu")
        if self.torch_device.type == "cuda" and not torch.cuda.is_available():
            raise UnavailableError(f"device {device!r} requested but this torch has no CUDA device")
        self.device = str(self.torch_device)
        self.graph = build_graph(ckpt, bool(h.get("includes_backbone")), h["precision"], h["score_type"],
                                 image_size).to(self.torch_device)

    def run(self, inputs) -> ScoreOutputs:
        x = torch.as_tensor(inputs).to(self.torch_device)
        with torch.inference_mode():
            _, mse, mfsim, cos = self.graph(x)
        return ScoreOutputs(mse=mse, mfsim=mfsim, stage_cos=cos)
