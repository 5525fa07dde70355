"""ckpt.pt: one file with everything needed to score (and to resume training), written atomically.

Contents (a dict of plain types and tensors, loadable with torch.load(weights_only=True)):
    format, format_version, lfdn_edge_version,
    feature {backbone, input_size, backbone_weights}, preprocessing {mean, std, layout "NHWC uint8 or NCHW [0,1]"},
    layout {stage_dims}, model (LFDNConfig), diffusion (DiffusionConfig), score (ScoreConfig; a missing
    ``convention`` reads as "project", what such checkpoints were scored with), train (TrainConfig),
    ema (EMA weights used for scoring), early_ema + early_epoch (snapshot for the LR score),
    calibration {tpr, n, thresholds {score: value}, id_mean, id_std} or None,
    train_state {epoch, ema_step, history, and until the last epoch model + optimizer for resuming),
    integrity {algorithm "sha256", digest}: a SHA-256 over every other entry (format version 2).

Integrity: torch.save's zip archive stores CRC-32s but torch.load does not check them, so a flipped bit in a
weight tensor loads silently (measured; tests/test_reliability_integrity.py). Every checkpoint written by
save_checkpoint therefore carries a SHA-256 of its contents (payload_digest: a canonical walk of the dict,
keys sorted, each value typed; tensors by dtype, shape and raw bytes; independent of the zip layout), and
load_checkpoint_dict recomputes it. Rules: format version 2 (written from now on) must carry a matching
digest, else CheckpointError; format version 1 (written before the digest existed) loads as before, without
verification, and is upgraded to version 2 the next time it is saved
(training resumes re-save every epoch). Other versions are refused.
"""

from __future__ import annotations

import hashlib
import os
import struct
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
FORMAT_VERSION = 2
LEGACY_FORMAT_VERSIONS = (1,)  # read without integrity verification (no digest was written then)
INTEGRITY_KEY = "integrity"
INTEGRITY_ALGORITHM = "sha256"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, foreign, corrupted or from an incompatible format version."""


def _feed(h: Any, obj: Any) -> None:
    """Feed a canonical, typed encoding of ``obj`` into hash ``h`` (dict keys sorted by their encoding)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(b"T" + str(t.dtype).encode() + repr(tuple(t.shape)).encode() + b";")
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)  # raw bytes, no copy
    elif obj is None or isinstance(obj, bool):
        h.update(b"N" if obj is None else (b"B1" if obj else b"B0"))
    elif isinstance(obj, int):
        s = str(int(obj)).encode()
        h.update(b"I" + struct.pack("<I", len(s)) + s)
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    elif isinstance(obj, str):
        s = obj.encode("utf-8", "surrogatepass")
        h.update(b"S" + struct.pack("<Q", len(s)) + s)
    elif isinstance(obj, (bytes, bytearray)):
        h.update(b"Y" + struct.pack("<Q", len(obj)) + bytes(obj))
    elif isinstance(obj, (list, tuple)):
        h.update((b"L" if isinstance(obj, list) else b"U") + struct.pack("<Q", len(obj)))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            kh = hashlib.sha256()
            _feed(kh, k)
            items.append((kh.digest(), v))
        items.sort(key=lambda kv: kv[0])
        h.update(b"D" + struct.pack("<Q", len(items)))
        for kd, v in items:
            h.update(kd)
            _feed(h, v)
    else:
        raise TypeError(f"checkpoint entries must be tensors or plain Python values, got {type(obj).__name__}")


def payload_digest(data: dict) -> str:
    """SHA-256 (hex) of every entry of a checkpoint dict except ``integrity`` (see the module docstring)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in data.items() if k != INTEGRITY_KEY})
    return h.hexdigest()


def sealed(data: dict) -> dict:
    """A copy of ``data`` as it is written: format marker, this version, and a fresh integrity digest."""
    data = {k: v for k, v in data.items() if k != INTEGRITY_KEY}
    data.update(format=FORMAT, format_version=FORMAT_VERSION, lfdn_edge_version=__version__)
    data[INTEGRITY_KEY] = {"algorithm": INTEGRITY_ALGORITHM, "digest": payload_digest(data)}
    return data


def save_checkpoint(data: dict, path: str | os.PathLike) -> Path:
    data = sealed(data)
    return atomic_write(path, lambda tmp: torch.save(data, tmp))


def verify_integrity(data: dict, src: str = "checkpoint") -> bool:
    """Check the digest of a loaded checkpoint dict: True if verified, False for a legacy (version 1) file
    that has none; CheckpointError if it is missing, malformed or does not match."""
    version = data.get("format_version")
    entry = data.get(INTEGRITY_KEY)
    if entry is None and version in LEGACY_FORMAT_VERSIONS:
        return False
    if not isinstance(entry, dict) or entry.get("algorithm") != INTEGRITY_ALGORITHM or \
            not isinstance(entry.get("digest"), str):
        raise CheckpointError(f"{src} is corrupted: its integrity entry is missing or malformed ({entry!r:.80}); "
                              "restore it from a good copy or retrain")
    try:
        digest = payload_digest(data)
    except TypeError as exc:
        raise CheckpointError(f"{src} is corrupted: {exc}") from exc
    if digest != entry["digest"]:
        raise CheckpointError(f"{src} is corrupted (SHA-256 of its contents does not match the stored one); "
                              "restore it from a good copy or retrain")
    return True


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
    if data.get("format_version") not in (FORMAT_VERSION, *LEGACY_FORMAT_VERSIONS):
        raise CheckpointError(f"{p} has checkpoint format version {data.get('format_version')}, this lfdn-edge "
                              f"({__version__}) reads versions {[*LEGACY_FORMAT_VERSIONS, FORMAT_VERSION]}; "
                              "retrain or use a matching lfdn-edge")
    verify_integrity(data, str(p))
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
        self.data = sealed(self.data)  # the in-memory digest matches what is written
        return atomic_write(target, lambda tmp: torch.save(self.data, tmp))

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
        # checkpoints written before the scoring convention existed scored with the project's
        score = {"convention": "project", **self.data["score"]}
        if score.get("stage_weights") == "id-spread":  # learned from the ID calibration split (train.calibrate)
            learned = (self.data.get("calibration") or {}).get("stage_weights")
            if learned is None:
                raise CheckpointError("this checkpoint's MFsim stage weights ('id-spread') are learned at "
                                      "calibration, and it is not calibrated; train it with calibration data")
            score["stage_weights"] = tuple(float(v) for v in learned)
        return ScoreConfig(**score)

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
