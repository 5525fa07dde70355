"""The scoring graph as a plain, export-friendly nn.Module (run by the torch backend, exported to ONNX by
:mod:`lfdn_edge.builder.onnx_export`).

Two graphs, both built from a :class:`~lfdn_edge.checkpoint.Checkpoint` (EMA weights):

* :class:`ScoringGraph`: features (N, C) float32 -> (score, mse, mfsim, stage_cos).
* :class:`ImageScoringGraph`: frames (N, H, W, 3) uint8 -> the same, with the preprocessing (to float,
  antialiased bilinear resize to the backbone's input size, (x - mean) / std), the frozen backbone, the
  pooling and per-stage standardisation inside.

Everything that the reference :class:`~lfdn_edge.reference.ReferenceScorer` computes at run time but that does not
depend on the input is a constant of the graph: the noise vectors (:class:`~lfdn_edge.diffusion.NoisePlan`), the
alpha_bar values and DDIM coefficients of the fixed levels, and each residual block's timestep branch
``ResBlock.emb_bias`` at each level. The arithmetic is the reference's, op for op, so in FP32 the scores agree
with ReferenceScorer to float rounding (tests/test_export.py measures it).

Precision. FP32: everything float32. FP16: the LFDN's Linear layers and the backbone run in float16, while the
GroupNorm statistics, the noising/DDIM arithmetic, the preprocessing, the pooling/standardisation and the
scores stay float32 (FP16 variance overflows; the scores are differences of nearby numbers). Graph inputs and
outputs are float32 (uint8 frames) in both variants, so every backend sees the same interface. The FP16 ONNX
is what a strongly typed TensorRT network (TensorRT 11, TensorRT-RTX) builds from.

GroupNorm with one group on an (N, W) vector is a LayerNorm over W with a per-channel affine; the graph uses
``layer_norm`` (ONNX LayerNormalization, opset 17) because it exports and maps to TensorRT's normalisation layer.
The antialiased resize is a linear, separable map for a fixed frame size, so it is exported as two MatMuls
with the exact weights of ``F.interpolate(..., antialias=True)`` (ONNX Resize's antialias mode is not
supported by TensorRT). The frame size (H, W) is therefore fixed per graph: ``image_size``, default the
backbone input size (no resize).
"""

from __future__ import annotations

import os

import torch
from torch import nn
import torch.nn.functional as F

from .backbones import get_backbone
from .checkpoint import Checkpoint
from .diffusion import Schedule
from .features import FeatureLayout, standardise
from .model import LFDN
from .diffusion import DdimPlan, NoisePlan
from .reference import COS_EPS, stage_weights

PRECISIONS = ("fp32", "fp16")
SCORE_OUTPUTS = ("score", "mse", "mfsim", "stage_cos")
FEATURES_INPUT = "features"
IMAGES_INPUT = "images"
MAX_FRAME_SIDE = 8192


def _dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.float16 if precision == "fp16" else torch.float32


def as_checkpoint(ckpt: Checkpoint | str | os.PathLike) -> Checkpoint:
    return ckpt if isinstance(ckpt, Checkpoint) else Checkpoint.load(ckpt)


class _LinearC(nn.Module):
    """A Linear whose weights are held in the compute dtype; input cast to it, output kept in it."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().clone().to(dtype), requires_grad=False)
        self.bias = nn.Parameter(linear.bias.detach().clone().to(dtype), requires_grad=False)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class _Norm32(nn.Module):
    """GroupNorm(1, W) on (N, W) as a float32 layer_norm (statistics always in float32)."""

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.weight = nn.Parameter(gn.weight.detach().clone().float(), requires_grad=False)
        self.bias = nn.Parameter(gn.bias.detach().clone().float(), requires_grad=False)
        self.eps = float(gn.eps)

    def forward(self, x):
        y = F.layer_norm(x.float(), (self.weight.shape[0],), self.weight, self.bias, self.eps)
        return y.to(x.dtype)


class FixedLevelLFDN(nn.Module):
    """The LFDN evaluated at a fixed set of levels: the timestep branch of every block is a constant.

    ``forward(z, i)`` is ``LFDN(z, levels[i])`` (i a Python int, unrolled at export), computed as the
    reference does: h = inp(SiLU(z)); per block h = h + fc2(SiLU(GN(fc1(SiLU(GN(h))) + emb_bias))); out.
    """

    def __init__(self, model: LFDN, levels: list[int], precision: str = "fp32"):
        super().__init__()
        dtype = _dtype(precision)
        self.dtype = dtype
        self.levels = list(levels)
        model = model.eval()
        self.inp = _LinearC(model.inp, dtype)
        self.norm1 = nn.ModuleList([_Norm32(b.norm1) for b in model.blocks])
        self.fc1 = nn.ModuleList([_LinearC(b.fc1, dtype) for b in model.blocks])
        self.norm2 = nn.ModuleList([_Norm32(b.norm2) for b in model.blocks])
        self.fc2 = nn.ModuleList([_LinearC(b.fc2, dtype) for b in model.blocks])
        self.out_norm = _Norm32(model.out_norm)
        self.out = _LinearC(model.out, dtype)
        # (levels, depth, W), float32 as the reference computes it, then cast to the compute dtype
        self.register_buffer("emb_bias", model.level_biases(self.levels).to(dtype), persistent=False)

    def forward(self, z: torch.Tensor, i: int) -> torch.Tensor:
        h = self.inp(F.silu(z.to(self.dtype)))
        for j in range(len(self.fc1)):
            a = self.fc1[j](F.silu(self.norm1[j](h))) + self.emb_bias[i, j]
            h = h + self.fc2[j](F.silu(self.norm2[j](a)))
        return self.out(F.silu(self.out_norm(h))).float()


def stage_cosines_explicit(z0: torch.Tensor, z_rec: torch.Tensor, layout: FeatureLayout) -> torch.Tensor:
    """(N, M) per-stage cosines, the arithmetic of torch's cosine_similarity written out (exports everywhere):
    sum((a / max(|a|, eps)) * (b / max(|b|, eps)))."""
    cols = []
    for a, b in zip(layout.split(z0), layout.split(z_rec)):
        na = torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(COS_EPS)
        nb = torch.linalg.vector_norm(b, dim=1, keepdim=True).clamp_min(COS_EPS)
        cols.append(((a / na) * (b / nb)).sum(dim=1))
    return torch.stack(cols, dim=1)


class ScoringGraph(nn.Module):
    """features (N, C) float32 -> (score, mse, mfsim, stage_cos): the DLSR reconstruction with constant noise.

    ``score`` is the engine's score type (mfsim or mse), the others are the terms it comes from. The
    reconstruction: x = sqrt(ab_t0) z0 + sqrt(1 - ab_t0) eps; for each level l_i: y = LFDN(x, l_i), then row i of
    the checkpoint convention's :class:`~lfdn_edge.diffusion.DdimPlan` with its fixed step noise; x after the
    last row (see :mod:`lfdn_edge.reference`). MFsim uses the convention's stage weights (constants).
    """

    def __init__(self, ckpt: Checkpoint, precision: str = "fp32", score_type: str = "mfsim"):
        super().__init__()
        if score_type not in ("mfsim", "mse"):
            raise ValueError(f"score_type must be 'mfsim' or 'mse', got {score_type!r}")
        self.precision = precision
        self.score_type = score_type
        self.layout = ckpt.layout
        config = ckpt.score_config
        schedule = Schedule(ckpt.diffusion_config)
        model = ckpt.build_model("ema")
        if model.config.in_dim != self.layout.dim:
            raise ValueError(f"checkpoint model input size {model.config.in_dim} != layout size {self.layout.dim}")
        ddim = DdimPlan(schedule, config)
        noise = NoisePlan(config, self.layout.dim)
        self.levels = list(ddim.levels)
        self.lfdn = FixedLevelLFDN(model, self.levels, precision)
        self.register_buffer("q_a", torch.tensor([ddim.q_a], dtype=torch.float32), persistent=False)
        self.register_buffer("q_b", torch.tensor([ddim.q_b], dtype=torch.float32), persistent=False)
        self.register_buffer("eps", noise.eps.clone()[None, :], persistent=False)
        for i, step_noise in enumerate(noise.step_noise):
            self.register_buffer(f"step_noise_{i}", step_noise.clone()[None, :], persistent=False)
        self.steps = ddim.updates
        self.register_buffer("stage_w", torch.tensor(stage_weights(config, self.layout.num_stages),
                                                     dtype=torch.float32), persistent=False)

    @property
    def input_dim(self) -> int:
        return self.layout.dim

    def reconstruct(self, z0: torch.Tensor) -> torch.Tensor:
        x = self.q_a * z0 + self.q_b * self.eps
        for i in range(len(self.levels)):
            x0_hat = self.lfdn(x, i)
            sqrt_ab, sqrt_1m_ab, c_x0, c_eps, sigma = self.steps[i]
            eps_hat = (x - sqrt_ab * x0_hat) / sqrt_1m_ab
            x = c_x0 * x0_hat + c_eps * eps_hat
            if sigma > 0.0:
                x = x + sigma * getattr(self, f"step_noise_{i}")
        return x

    def forward(self, features: torch.Tensor):
        z0 = features.to(torch.float32)
        z_rec = self.reconstruct(z0)
        mse = ((z0 - z_rec) ** 2).mean(dim=1)
        cos = stage_cosines_explicit(z0, z_rec, self.layout)
        mfsim = -(cos * self.stage_w).sum(dim=1)
        score = mfsim if self.score_type == "mfsim" else mse
        return score, mse, mfsim, cos


def resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float32 matrix R with R @ v == 1-D antialiased bilinear resize of v (torch's weights).

    Obtained by resizing the identity with ``F.interpolate(antialias=True)`` itself, so it is exactly the map
    that :class:`~lfdn_edge.features.MultiLayerFeatures` applies along one axis (the 2-D resize is separable).
    """
    eye = torch.eye(n_in, dtype=torch.float32).reshape(n_in, 1, 1, n_in)  # n_in "images" of size 1 x n_in
    out = F.interpolate(eye, size=(1, n_out), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(n_in, n_out).t().contiguous()


def _check_image_size(image_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if not (1 <= h <= MAX_FRAME_SIDE and 1 <= w <= MAX_FRAME_SIDE):
        raise ValueError(f"image_size sides must be in [1, {MAX_FRAME_SIDE}], got {h}x{w}")
    return h, w


class ImageScoringGraph(nn.Module):
    """frames (N, H, W, 3) uint8 RGB -> (score, mse, mfsim, stage_cos), backbone and preprocessing inside.

    Computes what :class:`~lfdn_edge.features.MultiLayerFeatures` computes (same backbone weights, same resize
    weights, same normalisation, pooling and standardisation), then :class:`ScoringGraph`.
    """

    def __init__(self, ckpt: Checkpoint, precision: str = "fp32", score_type: str = "mfsim",
                 image_size: tuple[int, int] | None = None):
        super().__init__()
        dtype = _dtype(precision)
        self.dtype = dtype
        fc = ckpt.feature_config
        spec = get_backbone(fc.backbone)
        if tuple(spec.stage_dims) != ckpt.layout.stage_dims:
            raise ValueError(f"checkpoint layout {ckpt.layout.stage_dims} does not match backbone {fc.backbone} "
                             f"stages {spec.stage_dims}")
        size = int(fc.input_size)
        self.input_size = size
        self.image_size = _check_image_size(image_size or (size, size))
        trunk, stage_modules = spec.build(fc.backbone_weights, size)
        children = list(trunk.children())
        ids = [next((k for k, c in enumerate(children) if c is m), None) for m in stage_modules]
        if any(k is None for k in ids) or ids != sorted(ids):
            raise ValueError(f"backbone {fc.backbone}: stage modules are not direct children of the trunk; "
                             "the export graph cannot collect them")
        self.trunk = trunk.eval().to(dtype)
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.stage_index = ids
        self.stage_dims = tuple(spec.stage_dims)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        h, w = self.image_size
        self.resize = (h, w) != (size, size)
        if self.resize:
            self.register_buffer("r_h", resize_matrix(h, size), persistent=False)            # (S, H)
            self.register_buffer("r_wt", resize_matrix(w, size).t().contiguous(), persistent=False)  # (W, S)
        self.scoring = ScoringGraph(ckpt, precision, score_type)

    def train(self, mode: bool = True):  # frozen: BatchNorm stays in eval mode
        return super().train(False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32).permute(0, 3, 1, 2) / 255.0  # cast first: TensorRT cannot transpose uint8
        if self.resize:
            x = torch.matmul(self.r_h, torch.matmul(x, self.r_wt))
        x = ((x - self.mean) / self.std).to(self.dtype)
        pooled = []
        for k, module in enumerate(self.trunk):
            x = module(x)
            if k in self.stage_index:
                pooled.append(standardise(x.to(torch.float32).mean(dim=(2, 3))))
        return torch.cat(pooled, dim=1)

    def forward(self, images: torch.Tensor):
        return self.scoring(self.features(images))


def build_graph(ckpt: Checkpoint | str | os.PathLike, include_backbone: bool = False, precision: str = "fp32",
                score_type: str = "mfsim", image_size: tuple[int, int] | None = None) -> nn.Module:
    ckpt = as_checkpoint(ckpt)
    if include_backbone:
        return ImageScoringGraph(ckpt, precision, score_type, image_size).eval()
    if image_size is not None:
        raise ValueError("image_size applies only to graphs that include the backbone (include_backbone=True)")
    return ScoringGraph(ckpt, precision, score_type).eval()


def input_spec(ckpt: Checkpoint, include_backbone: bool, image_size=None) -> dict:
    """The graph input as stored in engine headers: name, dtype and shape (-1 = the dynamic batch)."""
    if include_backbone:
        size = int(ckpt.feature_config.input_size)
        h, w = _check_image_size(image_size or (size, size))
        return {"name": IMAGES_INPUT, "dtype": "uint8", "shape": [-1, h, w, 3], "layout": "NHWC RGB 0..255"}
    return {"name": FEATURES_INPUT, "dtype": "float32", "shape": [-1, ckpt.layout.dim]}


def example_input(graph: nn.Module, batch: int = 2) -> torch.Tensor:
    if isinstance(graph, ImageScoringGraph):
        h, w = graph.image_size
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, generator=g)
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, graph.input_dim, generator=g)
