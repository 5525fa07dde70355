"""LFDN, the Latent Feature Diffusion Network of DLSR: an MLP of residual blocks on feature vectors.

Structure (DESIGN.md 2.2), GN1 = GroupNorm with one group over the channel vector:
    emb = Linear_E->E(SiLU(Linear_W->E(sinusoidal(t, W))))
    h   = Linear_C->W(SiLU(z))                        (input projection; "Linear C->W after SiLU")
    h   = ResBlock_i(h, emb)  for i in 1..N
    out = Linear_W->C(SiLU(GN1(h)))                   (the x0 prediction)
    ResBlock(x, emb): h = Linear(SiLU(GN1(x))) + Linear(SiLU(emb)); h = Linear(SiLU(GN1(h))); x + h
The second Linear of each block is zero-initialised, so every block starts as the identity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

from . import defaults

GN_EPS = 1e-5


@dataclass(frozen=True)
class LFDNConfig:
    """Sizes of the LFDN. Paper: width=1440, depth=16, emb_dim=720 (86.7 M parameters at C=720)."""

    in_dim: int
    width: int = defaults.WIDTH
    depth: int = defaults.DEPTH
    emb_dim: int = defaults.EMB_DIM

    def __post_init__(self):
        for name in ("in_dim", "width", "depth", "emb_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LFDN {name} must be >= 1, got {getattr(self, name)}")
        if self.width % 2:
            raise ValueError(f"LFDN width must be even (sinusoidal embedding), got {self.width}")

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos(t f_i), sin(t f_i)] with f_i = max_period^(-i / (dim/2)), i < dim/2 (as in guided-diffusion)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32).reshape(-1, 1) * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, width, eps=GN_EPS)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.norm2 = nn.GroupNorm(1, width, eps=GN_EPS)
        self.fc2 = nn.Linear(width, width)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def emb_bias(self, emb: torch.Tensor) -> torch.Tensor:
        """The timestep branch Linear(SiLU(emb)): a constant per block for a fixed t (foldable into fc1's bias)."""
        return self.emb(F.silu(emb))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.fc1(F.silu(self.norm1(x))) + self.emb_bias(emb)
        h = self.fc2(F.silu(self.norm2(h)))
        return x + h


class LFDN(nn.Module):
    def __init__(self, config: LFDNConfig):
        super().__init__()
        self.config = config
        c = config
        self.time_embed = nn.Sequential(nn.Linear(c.width, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim))
        self.inp = nn.Linear(c.in_dim, c.width)
        self.blocks = nn.ModuleList([ResBlock(c.width, c.emb_dim) for _ in range(c.depth)])
        self.out_norm = nn.GroupNorm(1, c.width, eps=GN_EPS)
        self.out = nn.Linear(c.width, c.in_dim)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_embed(sinusoidal_embedding(t, self.config.width))

    def forward(self, z: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """x0 prediction for noisy vectors ``z`` (N, C) at levels ``t`` (an int or an (N,) tensor)."""
        if z.dim() != 2 or z.shape[1] != self.config.in_dim:
            raise ValueError(f"LFDN expects features of shape (N, {self.config.in_dim}), got {tuple(z.shape)}")
        if not torch.is_tensor(t):
            t = torch.full((1,), int(t), device=z.device)
        emb = self.embed(t)
        h = self.inp(F.silu(z))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h)))

    @torch.no_grad()
    def level_biases(self, levels) -> torch.Tensor:
        """(len(levels), depth, width): each block's timestep term Linear(SiLU(emb(level))), the constant that
        engines fold into fc1's bias for a fixed DDIM level."""
        rows = []
        device = self.inp.weight.device
        for level in levels:
            emb = self.embed(torch.full((1,), int(level), device=device))
            rows.append(torch.cat([b.emb_bias(emb) for b in self.blocks], dim=0))
        return torch.stack(rows) if rows else torch.zeros(0, len(self.blocks), self.config.width)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
