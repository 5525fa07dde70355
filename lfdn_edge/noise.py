"""Counter-based Gaussian noise: Philox-4x32-10 + Box-Muller, keyed by (seed, stream, image key, index).

The same (seed, stream, image_key, index) always gives the same float32 number, whatever the batch, the
order or the backend. This is what makes lfdn-edge scores deterministic: an image gets the same score in
any batch, and the C++/CUDA kernels (issue "native core") reproduce these numbers bit-for-bit in the
uniform stage and to float32 rounding after Box-Muller.

Layout of one draw: counter = (index, stream, image_key_lo, image_key_hi), key = (seed_lo, seed_hi).
From the four 32-bit outputs (x0, x1, x2, x3) only x0 and x1 are used:
    u1 = (x0 + 1) / 2**32  in (0, 1]      u2 = x1 / 2**32  in [0, 1)
    n  = sqrt(-2 ln u1) * cos(2 pi u2)     (computed in float64, rounded to float32)
Streams: stream 0 is the forward-noising draw eps; stream s >= 1 is the eta-noise of DDIM update s.
"""

from __future__ import annotations

import numpy as np

PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint32(0x9E3779B9)
PHILOX_W1 = np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox-4x32 with 10 rounds. ``counter``: uint32 (..., 4). Returns uint32 (..., 4)."""
    c = np.asarray(counter, dtype=np.uint32)
    if c.shape[-1] != 4:
        raise ValueError(f"philox counter must have a last dimension of 4, got shape {c.shape}")
    c0, c1, c2, c3 = (c[..., i].astype(np.uint32) for i in range(4))
    k0 = np.uint32(key[0] & 0xFFFFFFFF)
    k1 = np.uint32(key[1] & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        for r in range(10):
            p0 = PHILOX_M0 * c0.astype(np.uint64)
            p1 = PHILOX_M1 * c2.astype(np.uint64)
            hi0 = (p0 >> np.uint64(32)).astype(np.uint32)
            lo0 = (p0 & _MASK32).astype(np.uint32)
            hi1 = (p1 >> np.uint64(32)).astype(np.uint32)
            lo1 = (p1 & _MASK32).astype(np.uint32)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
            if r < 9:
                k0 = np.uint32((int(k0) + int(PHILOX_W0)) & 0xFFFFFFFF)
                k1 = np.uint32((int(k1) + int(PHILOX_W1)) & 0xFFFFFFFF)
    return np.stack([c0, c1, c2, c3], axis=-1)


def _check_u64(name: str, value: int) -> int:
    value = int(value)
    if not 0 <= value < 2**64:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {value}")
    return value


def gaussian_noise(seed: int, stream: int, n: int, image_keys=None) -> np.ndarray:
    """Standard normal float32 noise.

    Returns shape (n,) when ``image_keys`` is None (image key 0: the same vector for every image, the
    default of lfdn-edge scoring), else (len(image_keys), n), one row per image key.
    """
    seed = _check_u64("seed", seed)
    if not 0 <= int(stream) < 2**32:
        raise ValueError(f"stream must be in [0, 2**32), got {stream}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    keys = np.zeros(1, dtype=np.uint64) if image_keys is None else np.asarray(image_keys, dtype=np.uint64).reshape(-1)
    idx = np.arange(n, dtype=np.uint32)
    counter = np.empty((keys.shape[0], n, 4), dtype=np.uint32)
    counter[..., 0] = idx[None, :]
    counter[..., 1] = np.uint32(stream)
    counter[..., 2] = (keys & _MASK32).astype(np.uint32)[:, None]
    counter[..., 3] = (keys >> np.uint64(32)).astype(np.uint32)[:, None]
    out = philox4x32_10(counter, (seed & 0xFFFFFFFF, seed >> 32))
    u1 = (out[..., 0].astype(np.float64) + 1.0) * (1.0 / 4294967296.0)
    u2 = out[..., 1].astype(np.float64) * (1.0 / 4294967296.0)
    z = (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)
    return z[0] if image_keys is None else z
