"""lfdn-edge: unsupervised OOD detection of images with DLSR (diffusion reconstruction of multi-layer
CNN features), trained in PyTorch and deployed for fast scoring on edge devices."""

from ._version import __version__
from .checkpoint import Checkpoint
from .diffusion import DiffusionConfig, Schedule
from .features import FeatureConfig, FeatureLayout, MultiLayerFeatures
from .model import LFDN, LFDNConfig
from .score import DLSRScorer, ScoreConfig
from .train import TrainConfig, train_lfdn
from .runtime.scorer import Scorer

__all__ = ["__version__", "Checkpoint", "DiffusionConfig", "Schedule", "FeatureConfig", "FeatureLayout",
           "MultiLayerFeatures", "LFDN", "LFDNConfig", "DLSRScorer", "ScoreConfig", "TrainConfig", "train_lfdn",
           "Scorer"]
