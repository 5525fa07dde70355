"""Diffusion maths of DLSR: the beta schedule, forward noising and deterministic-index DDIM updates.

Indices are 0-based: level t in {0..T-1} has alpha_bar[t] = prod_{s<=t} (1 - beta[s]). A clean vector z0 is
noised to level t with alpha_bar[t].

Two scoring conventions (``ScoreConfig.convention``, :data:`CONVENTIONS`), both expressed as the same data, a
:class:`DdimPlan` (model levels, noising factors and one coefficient row per model evaluation), so every
backend runs one chain whatever the convention:

* ``"project"``: model levels round(linspace(t, 0, k)); every DDIM update from level l to level l' uses
  alpha_bar[l] and alpha_bar[l']; the reconstruction is the last x0 prediction (its row maps x0_hat to itself).
* ``"authors"``: the authors' code (github xbyym/DLSR, ``ldm/models/diffusion/ddim.py`` with ``ldm_steps`` = T):
  model levels round(linspace(t, 1, k)) (t..1 for k = t); the model's eps is derived with alpha_bar[l] (its
  own level) but the DDIM update uses a_t = alpha_bar[l - 1] and a_prev = alpha_bar[l' - 1] (alpha_bar[0]
  after the last level), and the reconstruction is the last DDIM sample, not the last x0 prediction (with
  a_t = a_prev = alpha_bar[0] that last update is an identity up to rounding: the sample after the second
  last update, which still holds part of the noised input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .noise import gaussian_noise

CONVENTIONS = ("project", "authors")


@dataclass(frozen=True)
class DiffusionConfig:
    """Schedule parameters: betas = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2 (DESIGN.md 2.3)."""

    T: int = 100
    beta_start: float = 0.0015
    beta_end: float = 0.0195

    def __post_init__(self):
        if self.T < 2:
            raise ValueError(f"diffusion T must be >= 2, got {self.T}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")

    def to_dict(self) -> dict:
        return asdict(self)


class Schedule:
    """betas and alpha_bar in float64 (numpy), with float32 torch views for training."""

    def __init__(self, config: DiffusionConfig = DiffusionConfig()):
        self.config = config
        self.betas = np.linspace(np.sqrt(config.beta_start), np.sqrt(config.beta_end), config.T, dtype=np.float64) ** 2
        self.alpha_bar = np.cumprod(1.0 - self.betas)
        self.T = config.T

    def check_level(self, t: int) -> int:
        t = int(t)
        if not 0 <= t < self.T:
            raise ValueError(f"noise level t must be in [0, {self.T - 1}], got {t}")
        return t

    def torch_alpha_bar(self, device=None) -> torch.Tensor:
        return torch.as_tensor(self.alpha_bar, dtype=torch.float32, device=device)


def q_sample(z0: torch.Tensor, alpha_bar_t: torch.Tensor | float, eps: torch.Tensor) -> torch.Tensor:
    """Forward noising z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps (ab_t a scalar or a (N, 1) tensor)."""
    ab = torch.as_tensor(alpha_bar_t, dtype=z0.dtype, device=z0.device)
    return ab.sqrt() * z0 + (1.0 - ab).sqrt() * eps


def ddim_levels(t: int, steps: int) -> list[int]:
    """The k model-evaluation levels, from t down to 0: round(linspace(t, 0, k)), strictly decreasing.

    Example: t=3, k=3: linspace(3, 0, 3) = [3, 1.5, 0] -> [3, 2, 0] (Python's round is half-to-even).
    k=1 gives [t]: one evaluation whose x0 prediction is the reconstruction.
    """
    if steps < 1:
        raise ValueError(f"DDIM steps must be >= 1, got {steps}")
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    if steps > t + 1:
        raise ValueError(f"DDIM steps ({steps}) cannot exceed t + 1 ({t + 1}): the levels would repeat")
    if steps == 1:
        return [int(t)]
    levels = [int(round(v)) for v in np.linspace(t, 0, steps)]
    # Rounding can only repeat a level when steps > t + 1, which is rejected above.
    assert all(a > b for a, b in zip(levels, levels[1:])), levels
    return levels


def chain_levels(t: int, steps: int, convention: str = "project") -> list[int]:
    """The k model-evaluation levels of a convention (see the module docstring): ``project``:
    :func:`ddim_levels`; ``authors``: round(linspace(t, 1, k)), ending at level 1 as the authors' chain does
    (needs 2 <= k <= t, or t = k = 1)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"scoring convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention == "project":
        return ddim_levels(t, steps)
    if steps < 1:
        raise ValueError(f"DDIM steps must be >= 1, got {steps}")
    if t < 1 or steps > t or (steps == 1 and t != 1):
        raise ValueError(f"the authors' convention evaluates the model at levels t..1 (the last level is 1): "
                         f"needs 2 <= steps <= t, or t = steps = 1; got t={t}, steps={steps}")
    if steps == 1:
        return [1]
    levels = [int(round(v)) for v in np.linspace(t, 1, steps)]
    assert all(a > b for a, b in zip(levels, levels[1:])), levels
    return levels


def authors_coefficients(ab: np.ndarray, level: int, next_level: int | None, eta: float) -> tuple[float, ...]:
    """The authors' DDIM update after the model evaluation at ``level`` as one coefficient row
    (sqrt_ab_cur, sqrt_1m_ab_cur, c_x0, c_eps, sigma) of x' = c_x0 y + c_eps (x - sqrt_ab_cur y) / sqrt_1m_ab_cur
    + sigma noise (y the model's x0 prediction), float64 algebra of their three lines:
    e = (x - sqrt(ab[l]) y) / sqrt(1 - ab[l]);  p = (x - sqrt(1 - a_t) e) / sqrt(a_t);
    x' = sqrt(a_prev) p + sqrt(1 - a_prev - sigma^2) e + sigma noise,
    with a_t = ab[l - 1], a_prev = ab[l' - 1] (ab[0] after the last level) and
    sigma = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)). Substituting x = sqrt(ab[l]) y + sqrt(1 - ab[l]) e
    gives c_x0 = r sqrt(ab[l]), c_eps = r (sqrt(1 - ab[l]) - sqrt(1 - a_t)) + sqrt(1 - a_prev - sigma^2),
    r = sqrt(a_prev / a_t)."""
    a_t = float(ab[level - 1])
    a_prev = float(ab[next_level - 1]) if next_level is not None else float(ab[0])
    sigma = eta * np.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
    c_e = np.sqrt(max(1.0 - a_prev - sigma**2, 0.0))
    r = np.sqrt(a_prev / a_t)
    sa, s1 = np.sqrt(ab[level]), np.sqrt(1.0 - ab[level])
    return float(sa), float(s1), float(r * sa), float(r * (s1 - np.sqrt(1.0 - a_t)) + c_e), float(sigma)


def ddim_coefficients(ab_cur: float, ab_next: float, eta: float) -> tuple[float, float, float]:
    """Coefficients (c_x0, c_eps, sigma) of x_next = c_x0*x0_hat + c_eps*eps_hat + sigma*noise."""
    sigma = eta * np.sqrt((1.0 - ab_next) / (1.0 - ab_cur)) * np.sqrt(1.0 - ab_cur / ab_next)
    c_eps = np.sqrt(max(1.0 - ab_next - sigma**2, 0.0))
    return float(np.sqrt(ab_next)), float(c_eps), float(sigma)


def ddim_step(x: torch.Tensor, x0_hat: torch.Tensor, ab_cur: float, ab_next: float, eta: float,
              noise: torch.Tensor | None) -> torch.Tensor:
    """One DDIM update from level cur to level next given the model's x0 prediction.

    eps_hat = (x - sqrt(ab_cur) x0_hat) / sqrt(1 - ab_cur);
    x_next = sqrt(ab_next) x0_hat + sqrt(1 - ab_next - sigma^2) eps_hat + sigma * noise,
    sigma = eta * sqrt((1 - ab_next) / (1 - ab_cur)) * sqrt(1 - ab_cur / ab_next).
    """
    c_x0, c_eps, sigma = ddim_coefficients(ab_cur, ab_next, eta)
    eps_hat = (x - np.sqrt(ab_cur) * x0_hat) / np.sqrt(1.0 - ab_cur)
    out = c_x0 * x0_hat + c_eps * eps_hat
    if sigma > 0.0:
        if noise is None:
            raise ValueError("eta > 0 needs a noise tensor for the DDIM update")
        out = out + sigma * noise
    return out


class NoisePlan:
    """The fixed noise vectors of one ScoreConfig: eps (stream 0) and one per stochastic DDIM update."""

    def __init__(self, config, dim: int):
        """``config``: a ScoreConfig (t, steps, seed, convention). Update s mixes in stream s + 1; the last row of
        a plan is deterministic (sigma 0), so k model evaluations need k - 1 step noises in either convention."""
        levels = chain_levels(config.t, config.steps, getattr(config, "convention", "project"))
        self.levels = levels
        self.eps = torch.from_numpy(gaussian_noise(config.seed, 0, dim))
        self.step_noise = [torch.from_numpy(gaussian_noise(config.seed, s + 1, dim)) for s in range(len(levels) - 1)]


class DdimPlan:
    """The scalar constants of one reconstruction, the data every backend runs (the reference
    :meth:`lfdn_edge.reference.Reconstructor.reconstruct`, the ONNX graph, the native engines): the model levels,
    the noising factors q_a = sqrt(ab_t0), q_b = sqrt(1 - ab_t0) (float32 arithmetic, as q_sample does) and one
    row (sqrt_ab_cur, sqrt_1m_ab_cur, c_x0, c_eps, sigma) per model evaluation i:
    x <- c_x0 y + c_eps (x - sqrt_ab_cur y) / sqrt_1m_ab_cur + sigma step_noise[i], y = LFDN(x, levels[i]);
    the reconstruction is x after the last row. ``project``: rows 0..k-2 are the DDIM updates between the levels
    and the last row is (sqrt(ab_l), sqrt(1 - ab_l), 1, 0, 0), i.e. the reconstruction is the last x0 prediction
    (1 * y + 0 * finite == y exactly); ``authors``: every row is :func:`authors_coefficients`. The last row's
    sigma is always 0."""

    def __init__(self, schedule: Schedule, config):
        """``config``: a ScoreConfig (t, steps, eta, convention)."""
        schedule.check_level(config.t)
        ab = schedule.alpha_bar
        self.convention = getattr(config, "convention", "project")
        self.levels = chain_levels(config.t, config.steps, self.convention)
        ab0 = torch.tensor(float(ab[self.levels[0]]), dtype=torch.float32)
        self.q_a, self.q_b = float(ab0.sqrt()), float((1.0 - ab0).sqrt())
        self.updates = []
        eta = float(config.eta)
        if self.convention == "authors":
            nexts = self.levels[1:] + [None]
            self.updates = [authors_coefficients(ab, cur, nxt, eta) for cur, nxt in zip(self.levels, nexts)]
        else:
            for cur, nxt in zip(self.levels, self.levels[1:]):
                c_x0, c_eps, sigma = ddim_coefficients(float(ab[cur]), float(ab[nxt]), eta)
                self.updates.append((float(np.sqrt(ab[cur])), float(np.sqrt(1.0 - ab[cur])), c_x0, c_eps, sigma))
            last = self.levels[-1]
            self.updates.append((float(np.sqrt(ab[last])), float(np.sqrt(1.0 - ab[last])), 1.0, 0.0, 0.0))
        assert len(self.updates) == len(self.levels) and self.updates[-1][4] == 0.0
