"""lfdn-edge: unsupervised OOD detection of images with DLSR (diffusion reconstruction of multi-layer
CNN features), trained in PyTorch and deployed for fast scoring on edge devices.

The names below are imported on first use (PEP 562), so ``lfdn_edge.Scorer(engine)`` on a device loads the
run side only, never the training stack (data loaders, trainer, evaluation, plots).

Two scorers, two jobs: :class:`Scorer` is the deployment API (engine files, numpy/torch in and out, batch
policy, thresholds); :class:`ReferenceScorer` is the PyTorch reference of the method that every engine is
checked against (all scores, LR included, from the checkpoint's models).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # what type checkers see (the package ships py.typed); at run time see __getattr__ below
    from .builder.dispatch import build_artifact as build_artifact, build_engine as build_engine
    from .checkpoint import Checkpoint as Checkpoint
    from .diffusion import DiffusionConfig as DiffusionConfig, Schedule as Schedule
    from .features import FeatureConfig as FeatureConfig, FeatureLayout as FeatureLayout
    from .features import MultiLayerFeatures as MultiLayerFeatures
    from .model import LFDN as LFDN, LFDNConfig as LFDNConfig
    from .reference import ReferenceScorer as ReferenceScorer, ScoreConfig as ScoreConfig
    from .runtime.scorer import Scorer as Scorer
    from .train import TrainConfig as TrainConfig, train_lfdn as train_lfdn

_EXPORTS = {
    "Scorer": "runtime.scorer",
    "Checkpoint": "checkpoint",
    "DiffusionConfig": "diffusion",
    "Schedule": "diffusion",
    "FeatureConfig": "features",
    "FeatureLayout": "features",
    "MultiLayerFeatures": "features",
    "LFDN": "model",
    "LFDNConfig": "model",
    "ReferenceScorer": "reference",
    "ScoreConfig": "reference",
    "TrainConfig": "train",
    "train_lfdn": "train",
    "build_engine": "builder.dispatch",
    "build_artifact": "builder.dispatch",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lfdn_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
