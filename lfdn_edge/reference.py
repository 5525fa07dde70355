"""The PyTorch reference of DLSR scoring (what every engine is checked against): noise z0 to level t, run k DDIM steps with the LFDN's x0 predictions, compare z~0 with z0.

Scores, higher = more out-of-distribution:
    mse   = mean_c (z0 - z~0)^2
    mfsim = -sum_m w_m cos(z0_m, z~0_m)            w: the stage weights (``stage_weights``): project 1/M each,
                                                   authors 0 for stage 1 and 1/(M-1) for the others
    lr    = mse(early model) - mse(final model)     (sign checked on data, see ``lr_score`` below)
All noise comes from :mod:`lfdn_edge.noise` keyed by (seed, stream, image key 0, feature index): the same
vector for every image, so a score does not depend on the batch an image is in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import defaults
from .diffusion import CONVENTIONS, DdimPlan, NoisePlan, Schedule, chain_levels, q_sample
from .features import FeatureLayout
from .model import LFDN

SCORE_NAMES = ("mfsim", "mse", "lr")
STAGE_WEIGHTINGS = ("uniform", "skip-first", "id-spread")  # id-spread: learned at calibration (id_spread_weights)
COS_EPS = 1e-8


@dataclass(frozen=True)
class ScoreConfig:
    """Reconstruction settings: noise level t, k DDIM steps, DDIM eta, noise seed (paper code: t=3, k=3, eta=1),
    the scoring convention (``project`` or ``authors``, see :mod:`lfdn_edge.diffusion`) and the MFsim stage
    weights (None: the convention's; ``"uniform"``: 1/M each; ``"skip-first"``: 0 for stage 1, 1/(M-1) for the
    others; or a tuple of non-negative weights summing to 1; see :func:`stage_weights`)."""

    t: int = defaults.T
    steps: int = defaults.STEPS
    eta: float = defaults.ETA
    seed: int = defaults.NOISE_SEED
    convention: str = defaults.CONVENTION
    stage_weights: tuple | str | None = defaults.STAGE_WEIGHTS

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise ValueError(f"scoring convention must be one of {CONVENTIONS}, got {self.convention!r}")
        chain_levels(int(self.t), int(self.steps), self.convention)  # validates t and steps
        if not 0.0 <= float(self.eta) <= 1.0:
            raise ValueError(f"DDIM eta must be in [0, 1], got {self.eta}")
        if isinstance(self.stage_weights, str):
            if self.stage_weights not in STAGE_WEIGHTINGS:
                raise ValueError(f"stage_weights must be one of {STAGE_WEIGHTINGS} or a tuple of weights, "
                                 f"got {self.stage_weights!r}")
        elif self.stage_weights is not None:
            w = tuple(float(v) for v in self.stage_weights)
            if not w or any(not math.isfinite(v) or v < 0.0 for v in w) or abs(sum(w) - 1.0) > 1e-6:
                raise ValueError(f"stage_weights must be non-negative and sum to 1, got {self.stage_weights!r}")
            object.__setattr__(self, "stage_weights", w)

    def to_dict(self) -> dict:
        return asdict(self)


def check_features(z: torch.Tensor, dim: int, max_abs: float | None = None) -> None:
    """Reject what would silently give garbage scores: wrong shape, empty batch, NaN/Inf, and (``max_abs``)
    values of larger magnitude. One reduction over the data (the largest |value|; NaN and Inf propagate)."""
    if z.dim() != 2 or z.shape[1] != dim:
        raise ValueError(f"expected features of shape (N, {dim}), got {tuple(z.shape)}")
    if z.shape[0] == 0:
        raise ValueError("empty batch: need at least one feature vector")
    if not z.is_floating_point():
        raise TypeError(f"features must be floating point, got {z.dtype}")
    largest = float(z.abs().amax())
    if not math.isfinite(largest):
        bad = (~torch.isfinite(z)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"features contain NaN or Inf (rows {bad[:10]}{' ...' if len(bad) > 10 else ''})")
    if max_abs is not None and largest > max_abs:
        raise ValueError(f"features must be standardised feature vectors (|value| <= {max_abs:g}); got a value "
                         f"of magnitude {largest:.3g}; compute them with lfdn_edge.MultiLayerFeatures")


def stage_weights(config: ScoreConfig, num_stages: int) -> tuple[float, ...]:
    """The MFsim weight of each stage: ``config.stage_weights`` if given (a tuple, or ``"uniform"`` = 1/M each,
    ``"skip-first"`` = 0 for the first stage and 1/(M-1) for the others), else the convention's (project:
    uniform; authors: skip-first, as their MFsim skips stage 1)."""
    named = config.stage_weights if isinstance(config.stage_weights, str) else None
    if named is None and config.stage_weights is None:
        named = "skip-first" if config.convention == "authors" else "uniform"
    if named == "uniform":
        return (1.0 / num_stages,) * num_stages
    if named == "skip-first":
        if num_stages < 2:
            raise ValueError("skipping the first stage in MFsim needs at least two stages")
        return (0.0,) + (1.0 / (num_stages - 1),) * (num_stages - 1)
    if named == "id-spread":
        raise ValueError("'id-spread' stage weights are learned from the ID calibration split when the checkpoint "
                         "is calibrated; score with the checkpoint's score_config, which holds them")
    if config.stage_weights is not None:
        if len(config.stage_weights) != num_stages:
            raise ValueError(f"stage_weights has {len(config.stage_weights)} entries, the layout has {num_stages} stages")
    return tuple(config.stage_weights)


def id_spread_weights(cal_stage_cos) -> tuple[float, ...]:
    """MFsim stage weights learned from ID data only (``stage_weights="id-spread"``, issue 27): each stage's
    weight is the inverse of the standard deviation of its cosine on the ID calibration split, normalised to sum
    to 1, so that each stage counts in units of its own ID spread (weighted MFsim then ranks items as the sum of
    the per-stage ID z-scores). No OOD data is used. Measured in docs/QUALITY.md: better on colour sprites
    (sprites-ood), worse on the grey benchmarks."""
    sd = np.asarray(cal_stage_cos, dtype=np.float64).std(axis=0)
    if sd.ndim != 1 or sd.size == 0:
        raise ValueError(f"expected (N, M) stage cosines, got shape {np.shape(cal_stage_cos)}")
    inv = 1.0 / np.maximum(sd, 1e-12)
    return tuple(float(v) for v in inv / inv.sum())


def stage_cosines(z0: torch.Tensor, z_rec: torch.Tensor, layout: FeatureLayout) -> torch.Tensor:
    """(N, M) cosine similarity of each stage's vector with its reconstruction."""
    cols = [F.cosine_similarity(a, b, dim=1, eps=COS_EPS) for a, b in zip(layout.split(z0), layout.split(z_rec))]
    return torch.stack(cols, dim=1)


class Reconstructor:
    """Reconstruct z0 with one LFDN (the EMA weights in practice) under a ScoreConfig."""

    def __init__(self, model: LFDN, schedule: Schedule, config: ScoreConfig):
        self.model = model.eval()
        self.schedule = schedule
        self.config = config
        schedule.check_level(config.t)
        self.dim = model.config.in_dim
        self.noise = NoisePlan(config, self.dim)
        self.plan = DdimPlan(schedule, config)

    @torch.no_grad()
    def reconstruct(self, z0: torch.Tensor) -> torch.Tensor:
        """z~0: the chain of :class:`~lfdn_edge.diffusion.DdimPlan` (after each model evaluation i,
        x <- c_x0 y + c_eps (x - sqrt_ab_cur y) / sqrt_1m_ab_cur + sigma step_noise[i]); x after the last row."""
        check_features(z0, self.dim)
        z0 = z0.to(torch.float32)
        device = z0.device
        ab = self.schedule.alpha_bar
        levels = self.plan.levels
        x = q_sample(z0, float(ab[levels[0]]), self.noise.eps.to(device)[None, :])
        for i, level in enumerate(levels):
            y = self.model(x, torch.full((1,), level, device=device))
            sqrt_ab, sqrt_1m_ab, c_x0, c_eps, sigma = self.plan.updates[i]
            eps_hat = (x - sqrt_ab * y) / sqrt_1m_ab
            x = c_x0 * y + c_eps * eps_hat
            if sigma > 0.0:
                x = x + sigma * self.noise.step_noise[i].to(device)[None, :]
        return x


def score_terms(z0: torch.Tensor, z_rec: torch.Tensor, layout: FeatureLayout,
                weights: tuple[float, ...] | None = None) -> dict[str, torch.Tensor]:
    """Per-item MSE, MFsim (stage ``weights``, default 1/M each) and the per-stage cosines they come from."""
    cos = stage_cosines(z0, z_rec, layout)
    w = torch.tensor(weights if weights is not None else (1.0 / layout.num_stages,) * layout.num_stages,
                     dtype=cos.dtype, device=cos.device)
    return {"mse": ((z0 - z_rec) ** 2).mean(dim=1), "mfsim": -(cos * w).sum(dim=1), "stage_cos": cos}


class ReferenceScorer:
    """All DLSR scores for feature batches: final EMA model, plus the early snapshot for ``lr`` if given."""

    def __init__(self, model: LFDN, layout: FeatureLayout, schedule: Schedule, config: ScoreConfig,
                 early_model: LFDN | None = None):
        if model.config.in_dim != layout.dim:
            raise ValueError(f"model input size {model.config.in_dim} != feature layout size {layout.dim}")
        self.layout = layout
        self.weights = stage_weights(config, layout.num_stages)
        self.final = Reconstructor(model, schedule, config)
        self.early = Reconstructor(early_model, schedule, config) if early_model is not None else None

    @property
    def available(self) -> tuple[str, ...]:
        return SCORE_NAMES if self.early is not None else ("mfsim", "mse")

    @torch.no_grad()
    def scores(self, z0: torch.Tensor | np.ndarray, batch_size: int = 1024) -> dict[str, np.ndarray]:
        """Dict of float64 numpy arrays (N,): mfsim, mse, lr (if an early model exists), stage_cos (N, M)."""
        z = torch.as_tensor(np.asarray(z0) if isinstance(z0, np.ndarray) else z0)
        check_features(z, self.layout.dim)
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, z.shape[0], batch_size):
            zb = z[start:start + batch_size].to(torch.float32)
            terms = score_terms(zb, self.final.reconstruct(zb), self.layout, self.weights)
            if self.early is not None:
                early_mse = ((zb - self.early.reconstruct(zb)) ** 2).mean(dim=1)
                terms["lr"] = lr_score(terms["mse"], early_mse)
            for k, v in terms.items():
                parts.setdefault(k, []).append(v.double().cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}


def lr_score(final_mse: torch.Tensor, early_mse: torch.Tensor) -> torch.Tensor:
    """LR = MSE(early) - MSE(final): the early EMA snapshot's error minus the final model's. EXPERIMENTAL.

    The sign was checked on data, as DESIGN.md asks: on fmnist-ood (Lite0 at 64 px, W=512, N=6, 30 epochs,
    early snapshot at epoch 3) MSE(final) - MSE(early) gave a far-OOD mean AUROC of 3.1 %, so its negation,
    this function, gives about 97 %: OOD features lose more reconstruction error between the early and the
    final model than ID features do (at that point the early model is still poor on everything, and OOD
    vectors are farther from what it outputs). Higher = more OOD.

    Why experimental: the direction is data-dependent. On a small user folder (880 training images) the same
    formula gave AUROC below 50 on every OOD set (34.9 on the nearest), i.e. the opposite direction, and how
    early the snapshot is matters too (docs/QUALITY.md, "The LR score and its sign"). No formulation was found here
    whose direction holds on both, so training warns, the calibration lists LR as experimental, and engines
    and the Scorer never use it.
    """
    return early_mse - final_mse
