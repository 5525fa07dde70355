"""Baselines on the same multi-layer features, for an honest comparison with DLSR.

kNN: score = 1 - cosine similarity to the k-th nearest training feature (higher = more OOD).
Mahalanobis: one Gaussian fitted to the (unlabelled) training features, shrinkage-regularised covariance;
score = squared Mahalanobis distance.
"""

from __future__ import annotations

import numpy as np
import torch

from . import defaults


def _as_2d(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if t.dim() != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, C) array, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return t


class KNNScorer:
    def __init__(self, train_features, k: int = defaults.KNN_K):
        self.bank = torch.nn.functional.normalize(_as_2d(train_features, "train features"), dim=1)
        if not 1 <= k <= self.bank.shape[0]:
            raise ValueError(f"k must be in [1, {self.bank.shape[0]}], got {k}")
        self.k = k

    def score(self, features, batch_size: int = 2048) -> np.ndarray:
        q = torch.nn.functional.normalize(_as_2d(features, "features"), dim=1)
        if q.shape[1] != self.bank.shape[1]:
            raise ValueError(f"features have {q.shape[1]} channels, the kNN bank has {self.bank.shape[1]}")
        out = []
        for s in range(0, q.shape[0], batch_size):
            sims = q[s:s + batch_size] @ self.bank.T
            out.append(1.0 - sims.topk(self.k, dim=1).values[:, -1])
        return torch.cat(out).double().numpy()


class MahalanobisScorer:
    def __init__(self, train_features, shrinkage: float = 1e-3):
        x = _as_2d(train_features, "train features").double()
        self.mean = x.mean(dim=0)
        xc = x - self.mean
        cov = xc.T @ xc / max(x.shape[0] - 1, 1)
        # shrink towards the scaled identity so the inverse exists even when N < C
        cov = (1.0 - shrinkage) * cov + shrinkage * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
        self.precision = torch.linalg.inv(cov)

    def score(self, features) -> np.ndarray:
        x = _as_2d(features, "features").double()
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"features have {x.shape[1]} channels, the fitted Gaussian has {self.mean.shape[0]}")
        xc = x - self.mean
        return ((xc @ self.precision) * xc).sum(dim=1).numpy()
