"""The single image preprocessing used by every source: any PIL image -> uint8 (size, size, 3) RGB."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..progress import bar

# Downscaling first reduces by an integer factor with a box filter while the image is more than
# REDUCING_GAP times the target, then finishes with the bilinear (antialiased) filter: faster on big
# images, visually the same.
REDUCING_GAP = 3.0


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with alpha composited over black and grey replicated to three channels."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, I, F... (convert("RGB") replicates grey)


def to_rgb_square(img: Image.Image, size: int) -> np.ndarray:
    """Convert ``img`` to a ``uint8`` array of shape ``(size, size, 3)``.

    Transparent pixels are composited over black (the benchmark's ID data is light-on-black), grey is
    replicated to three channels, and the whole image is resized to ``size`` x ``size`` with PIL's
    bilinear filter (antialiased when shrinking). Non-square images are stretched, never cropped.
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    rgb = _to_rgb(img)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
    return np.asarray(rgb, dtype=np.uint8)


def load_image_files(paths, size: int, desc: str) -> np.ndarray:
    """Open each file with PIL and stack :func:`to_rgb_square` of it: uint8 (N, size, size, 3)."""

    images = []
    for path in bar(paths, desc):
        with Image.open(path) as img:
            images.append(to_rgb_square(img, size))
    return np.stack(images)
