"""ckpt.pt: one file with everything needed to score (and to resume training), written atomically.

Contents (a dict of plain types and tensors, loadable with torch.load(weights_only=True)):
    format, format_version, lfdn_edge_version,
    feature {backbone, input_size, backbone_weights}, preprocessing {mean, std, layout "NHWC uint8 or NCHW [0,1]"},
    layout {stage_dims}, model (LFDNConfig), diffusion (DiffusionConfig), score (ScoreConfig), train (TrainConfig),
    ema (EMA weights used for scoring), early_ema + early_epoch (snapshot for the LR score),
    calibration {tpr, n, thresholds {score: value}, id_mean, id_std} or None,
    train_state {epoch, ema_step, history, and until the last epoch model + optimizer for resuming).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._atomic import atomic_write
from ._version import __version__
from .backbones import get_backbone
from .diffusion import DiffusionConfig, Schedule
from .file_kinds import CHECKPOINT, ENGINE, file_kind
from .features import FeatureConfig, FeatureLayout
from .model import LFDN, LFDNConfig
from .reference import ReferenceScorer, ScoreConfig

FORMAT = "lfdn-edge-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, foreign or from an incompatible format version."""


def save_checkpoint(data: dict, path: str | os.PathLike) -> Path:
    data = dict(data, format=FORMAT, format_version=FORMAT_VERSION, lfdn_edge_version=__version__)
    return atomic_write(path, lambda tmp: torch.save(data, tmp))


def load_checkpoint_dict(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    kind = file_kind(p)
    if kind == ENGINE:
        raise CheckpointError(f"{p} is an lfdn-edge engine, not a checkpoint: pass the checkpoint (.pt) it was "
                              "built from, or load the engine with lfdn_edge.Scorer")
    if kind != CHECKPOINT:
        raise CheckpointError(f"{p} is not an lfdn-edge checkpoint (not a torch.save archive: truncated or "
                              "foreign file?)")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in reason or "Weights only load failed" in reason:
            reason = "it holds objects other than tensors and plain Python values"
        raise CheckpointError(f"{p} is not a readable lfdn-edge checkpoint (truncated or foreign file?): {reason}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an lfdn-edge checkpoint (no '{FORMAT}' format marker)")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{p} has checkpoint format version {data.get('format_version')}, this lfdn-edge "
                              f"({__version__}) reads version {FORMAT_VERSION}; retrain or use a matching lfdn-edge")
    missing = [k for k in ("feature", "layout", "model", "diffusion", "score", "ema") if k not in data]
    if missing:
        raise CheckpointError(f"{p} lacks required entries {missing}")
    return data


@dataclass
class Checkpoint:
    """A loaded checkpoint with typed accessors."""

    data: dict[str, Any]
    path: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Checkpoint":
        return cls(load_checkpoint_dict(path), Path(path))

    def save(self, path: str | os.PathLike | None = None) -> Path:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no path to save the checkpoint to")
        return save_checkpoint(self.data, target)

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(**self.data["feature"])

    @property
    def layout(self) -> FeatureLayout:
        return FeatureLayout(tuple(self.data["layout"]["stage_dims"]))

    @property
    def model_config(self) -> LFDNConfig:
        return LFDNConfig(**self.data["model"])

    @property
    def diffusion_config(self) -> DiffusionConfig:
        return DiffusionConfig(**self.data["diffusion"])

    @property
    def score_config(self) -> ScoreConfig:
        return ScoreConfig(**self.data["score"])

    @property
    def calibration(self) -> dict | None:
        return self.data.get("calibration")

    def threshold(self, score: str) -> float:
        cal = self.calibration
        if not cal or score not in cal.get("thresholds", {}):
            raise CheckpointError(f"checkpoint has no calibrated threshold for score {score!r}")
        return float(cal["thresholds"][score])

    def build_model(self, which: str = "ema") -> LFDN:
        state = self.data.get(which if which != "early" else "early_ema")
        if state is None:
            raise CheckpointError(f"checkpoint has no {which!r} weights")
        model = LFDN(self.model_config)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint weights do not match its model config: {exc}") from exc
        return model.eval()

    def reference_scorer(self, score_config: ScoreConfig | None = None) -> ReferenceScorer:
        early = self.build_model("early") if self.data.get("early_ema") is not None else None
        return ReferenceScorer(self.build_model("ema"), self.layout, Schedule(self.diffusion_config),
                          score_config or self.score_config, early_model=early)


def preprocessing_dict(feature: FeatureConfig) -> dict:
    spec = get_backbone(feature.backbone)
    return {"mean": list(spec.mean), "std": list(spec.std), "input_size": int(feature.input_size),
            "resize": "bilinear-antialias", "input": "uint8 NHWC RGB (0..255) or float NCHW RGB in [0, 1]"}
