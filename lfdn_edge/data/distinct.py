"""Collecting the distinct, visible images of a colour set (``sprites-ood``'s sets).

An image is kept when (1) it is *visible*: composited over black (what :func:`to_rgb_square` does), at
least ``MIN_VISIBLE`` of its pixels are brighter than ``DARK`` in some channel (drops empty sprites and the
black "void" / fog tiles), and, if asked, at least ``min_opaque`` of its pixels are not fully transparent;
(2) its decoded RGBA pixels differ from every image kept so far (SHA-1); and (3) its resized result differs
from every result kept so far (two nearly equal sources can become equal at a small size). The first image
in the caller's (sorted) order wins.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from .preprocess import to_rgb_square

MIN_VISIBLE = 0.01
DARK = 16


def visible_fraction(rgba: np.ndarray) -> float:
    """Share of pixels brighter than ``DARK`` once composited over black (``rgba``: uint8 (H, W, 4))."""
    lit = rgba[..., :3].max(axis=-1).astype(np.uint32) * rgba[..., 3] // 255
    return float((lit > DARK).mean())


class Distinct:
    """Accumulates the distinct visible images at ``size`` px (see the module docstring)."""

    def __init__(self, size: int, min_opaque: float = 0.0):
        self.size, self.min_opaque = size, min_opaque
        self.images: list[np.ndarray] = []
        self._seen: set[bytes] = set()

    def add(self, img: Image.Image) -> bool:
        """Keep ``img`` (any PIL image) if it passes the three rules; True if kept."""
        rgba = img.convert("RGBA")
        arr = np.asarray(rgba)
        if visible_fraction(arr) < MIN_VISIBLE or (arr[..., 3] > 0).mean() < self.min_opaque:
            return False
        source = b"s" + hashlib.sha1(arr.tobytes()).digest()
        if source in self._seen:
            return False
        out = to_rgb_square(rgba, self.size)
        result = b"r" + hashlib.sha1(out.tobytes()).digest()
        if result in self._seen:
            return False
        self._seen.update((source, result))
        self.images.append(out)
        return True

    def stack(self, desc: str) -> np.ndarray:
        if not self.images:
            raise ValueError(f"{desc}: no usable image")
        return np.stack(self.images)
