"""Seeded, reproducible subsampling.

Every random choice in this package draws from ``numpy.random.Generator(PCG64(SeedSequence([seed,
crc32(key)])))``: one independent stream per purpose ``key`` (e.g. ``"fmnist-ood/train"``), so the same
``seed`` always selects the same images, and changing one count (say ``n_ood``) does not change what
another set (say ``train``) selects.
"""

from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, key: str) -> np.random.Generator:
    """The generator for purpose ``key`` under ``seed`` (see the module docstring)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), zlib.crc32(key.encode())])))


def choose(n_total: int, n: int | None, seed: int, key: str) -> np.ndarray:
    """Sorted indices of ``min(n, n_total)`` items drawn without replacement (all of them if ``n`` is None)."""
    if n is None or n >= n_total:
        return np.arange(n_total, dtype=np.int64)
    if n < 0:
        raise ValueError(f"{key}: the number of images to take must be >= 0, got {n}")
    return np.sort(rng_for(seed, key).choice(n_total, size=n, replace=False)).astype(np.int64)


def split_indices(n_total: int, counts: list[int], seed: int, key: str) -> list[np.ndarray]:
    """Disjoint sorted index sets of the given sizes from one random permutation of ``range(n_total)``."""
    if any(c < 0 for c in counts):
        raise ValueError(f"{key}: split sizes must be >= 0, got {counts}")
    if sum(counts) > n_total:
        raise ValueError(f"{key}: asked for {' + '.join(map(str, counts))} = {sum(counts)} images but only "
                         f"{n_total} are available; lower the counts")
    perm = rng_for(seed, key).permutation(n_total)
    out, start = [], 0
    for c in counts:
        out.append(np.sort(perm[start:start + c]).astype(np.int64))
        start += c
    return out
