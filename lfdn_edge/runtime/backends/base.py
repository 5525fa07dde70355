"""The interface every scoring backend implements (torch, native, onnxruntime, tensorrt).

The Scorer validates inputs (shape, dtype, NaN/Inf, empty batch, batch range) before calling a backend, so
backends only convert, run and return. Outputs are per item: mse (N,), mfsim (N,), stage_cos (N, M).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ...artifact.file import EngineArtifact


@dataclass
class ScoreOutputs:
    """Per-item outputs, numpy arrays or torch tensors (on the backend's device); the Scorer converts."""

    mse: np.ndarray        # (N,)
    mfsim: np.ndarray      # (N,)
    stage_cos: np.ndarray  # (N, M)

    def get(self, score_type: str) -> np.ndarray:
        if score_type not in ("mse", "mfsim"):
            raise ValueError(f"unknown score type {score_type!r}")
        return getattr(self, score_type)


class ScoringBackend(ABC):
    """One loaded engine on one device."""

    name: str = "abstract"

    def __init__(self, artifact: EngineArtifact, device: str | None = None):
        self.artifact = artifact
        self.header = artifact.header
        self.device = device

    @abstractmethod
    def run(self, inputs) -> ScoreOutputs:
        """Score one validated batch: float32 features (N, C), or uint8 NHWC images if the engine has the backbone.

        ``inputs`` is a numpy array or a torch tensor (CPU, or CUDA for GPU backends); a backend may return
        torch tensors on its device so that torch-in/torch-out needs no host copy.
        """

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(usable here, reason if not): e.g. a missing package or no GPU."""
        return True, ""
