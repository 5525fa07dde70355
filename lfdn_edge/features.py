"""Multi-layer features: frozen backbone stages -> global average pool -> per-stage standardisation.

z0 = concat_m standardise(GAP(stage_m(x))), standardise(f) = (f - mean(f)) / sqrt(var(f) + delta), with the
mean and (population) variance taken over the channels of one stage of one sample (DESIGN.md 2.1).
"""

from __future__ import annotations

import contextvars
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from . import defaults
from .backbones import DEFAULT_BACKBONE, get_backbone

STANDARDISE_DELTA = 1e-5

# The list of stage outputs of the feature call under way in this thread (or asyncio task). Per call,
# not on the module, so that several threads can extract with one MultiLayerFeatures at once (issue 29: with the
# list on the module a second call replaced the first one's list and both appended to one).
_STAGE_CAPTURE: contextvars.ContextVar = contextvars.ContextVar("lfdn_edge_stage_capture", default=None)


@dataclass(frozen=True)
class FeatureLayout:
    """Sizes of the M stages inside the concatenated feature vector z0 (C = sum of stage_dims)."""

    stage_dims: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "stage_dims", tuple(int(d) for d in self.stage_dims))
        if not self.stage_dims or min(self.stage_dims) < 1:
            raise ValueError(f"feature layout needs at least one stage of size >= 1, got {self.stage_dims}")

    @property
    def dim(self) -> int:
        return sum(self.stage_dims)

    @property
    def num_stages(self) -> int:
        return len(self.stage_dims)

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.stage_dims)]))

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        if z.shape[-1] != self.dim:
            raise ValueError(f"features have {z.shape[-1]} channels, the layout {self.stage_dims} needs {self.dim}")
        return list(torch.split(z, list(self.stage_dims), dim=-1))

    def to_dict(self) -> dict:
        return {"stage_dims": list(self.stage_dims)}


def standardise(f: torch.Tensor, delta: float = STANDARDISE_DELTA) -> torch.Tensor:
    """Per-sample standardisation of one stage's pooled vector f (N, D) over its D channels."""
    mean = f.mean(dim=-1, keepdim=True)
    var = f.var(dim=-1, unbiased=False, keepdim=True)
    return (f - mean) / torch.sqrt(var + delta)


@dataclass(frozen=True)
class FeatureConfig:
    """What turns an image into z0: backbone id, input size (square) and the weights used."""

    backbone: str = DEFAULT_BACKBONE
    input_size: int = defaults.INPUT_SIZE
    backbone_weights: str | None = None  # None: the packaged default (only for efficientnet-lite0)

    def __post_init__(self):
        get_backbone(self.backbone)
        if not 16 <= int(self.input_size) <= 1024:
            raise ValueError(f"input size must be in [16, 1024] pixels, got {self.input_size}")

    def to_dict(self) -> dict:
        return asdict(self)


class MultiLayerFeatures(nn.Module):
    """Image batch -> z0. Accepts uint8 NHWC (camera frames, 0..255) or float NCHW in [0, 1].

    Preprocessing inside the module (so it exports with the model): to float, bilinear resize (antialiased)
    to ``input_size`` if needed, (x - mean) / std of the backbone.

    Safe to call from several threads at once: each call collects its own stage outputs (the forward hooks
    append to the list of the call under way in their thread); the frozen backbone is only read.
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.config = config
        spec = get_backbone(config.backbone)
        self.spec = spec
        self.layout = FeatureLayout(spec.stage_dims)
        self.trunk, stage_modules = spec.build(config.backbone_weights, int(config.input_size))
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        for module in stage_modules:
            module.register_forward_hook(self._capture)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def _capture(self, module, inputs, output):
        stages = _STAGE_CAPTURE.get()
        if stages is not None:  # the trunk run outside forward() captures nothing
            stages.append(output)

    def train(self, mode: bool = True):  # the backbone is frozen: BatchNorm stays in eval mode
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"expected a batch of images (N, H, W, 3) uint8 or (N, 3, H, W) float, got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            if images.shape[-1] != 3:
                raise ValueError(f"uint8 images must be NHWC with 3 channels (RGB), got {tuple(images.shape)}")
            x = images.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        elif images.is_floating_point():
            if images.shape[1] != 3:
                raise ValueError(f"float images must be NCHW with 3 channels in [0, 1], got {tuple(images.shape)}")
            x = images.to(torch.float32)
        else:
            raise TypeError(f"images must be uint8 NHWC or float NCHW, got dtype {images.dtype}")
        size = int(self.config.input_size)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        stages: list[torch.Tensor] = []
        token = _STAGE_CAPTURE.set(stages)
        try:
            self.trunk(x)
        finally:
            _STAGE_CAPTURE.reset(token)
        if len(stages) != self.layout.num_stages:
            raise RuntimeError(f"backbone produced {len(stages)} stage outputs, expected {self.layout.num_stages}")
        pooled = [standardise(s.mean(dim=(2, 3))) for s in stages]
        for p, d in zip(pooled, self.layout.stage_dims):
            if p.shape[1] != d:
                raise RuntimeError(f"stage has {p.shape[1]} channels, registry says {d}")
        return torch.cat(pooled, dim=1)


def extract_features(extractor: MultiLayerFeatures, images: np.ndarray, batch_size: int = 128,
                     progress: bool = True, desc: str = "features") -> np.ndarray:
    """Run the extractor over uint8 (N, H, W, 3) images in batches; returns float32 (N, C)."""
    from tqdm.auto import tqdm

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
    out = np.empty((images.shape[0], extractor.layout.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, images.shape[0], batch_size), desc=desc, disable=not progress,
                          unit="batch", leave=False):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
            out[start:start + batch.shape[0]] = extractor(batch.to(extractor.mean.device)).cpu().numpy()
    return out
