"""``emoji`` OOD set: every single-code-point emoji of Noto Color Emoji (``fonts-noto-color-emoji``).

Code points come from the font's own ``cmap`` table. Left out: ASCII (the keycap bases ``#*0-9``, drawn
as plain characters), regional-indicator letters and skin-tone swatches (building blocks of flag and
skin-tone sequences), tag characters and private-use code points; then glyphs that draw nothing (joiners,
selectors) and pixel-identical duplicates. Noto Color Emoji is a bitmap font with one strike: it must be
loaded at size ``FONT_SIZE`` (109) and drawn with ``embedded_color=True``. Each emoji is drawn on a
transparent square, composited over black, and resized.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from ..progress import bar

from .preprocess import to_rgb_square
from .containers import ImageSet
from .fonts import font_codepoints

PACKAGES = ("fonts-noto-color-emoji",)
FONT = Path("usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109
_EXCLUDED = ((0x0000, 0x007F),    # ASCII
             (0x1F1E6, 0x1F1FF),  # regional indicators
             (0x1F3FB, 0x1F3FF),  # skin-tone modifiers
             (0xE0000, 0xE007F),  # tags
             (0xE000, 0xF8FF),    # private use
             (0xF0000, 0x10FFFF))  # supplementary private use


def emoji_codepoints(font_path: Path) -> list[int]:
    """Sorted code points of the font that are candidate emoji (see the module docstring)."""
    return [cp for cp in sorted(font_codepoints(font_path))
            if not any(lo <= cp <= hi for lo, hi in _EXCLUDED)]


def build(debs: Path, size: int) -> ImageSet:
    """Every distinct non-empty emoji (about 1380) as (N, size, size, 3) uint8; labels are code points."""
    path = debs / PACKAGES[0] / FONT
    if not path.is_file():
        raise FileNotFoundError(f"emoji font not found: {path}; delete {debs / PACKAGES[0]} to re-fetch")
    # Raqm layout fails on some lone code points; single characters need no shaping, so use BASIC.
    font = ImageFont.truetype(str(path), FONT_SIZE, layout_engine=ImageFont.Layout.BASIC)
    images, labels, seen = [], [], set()
    for cp in bar(emoji_codepoints(path), "emoji"):
        left, top, right, bottom = font.getbbox(chr(cp))
        side = max(right - left, bottom - top)
        if side <= 0:
            continue
        canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        xy = ((side - (right - left)) // 2 - left, (side - (bottom - top)) // 2 - top)
        ImageDraw.Draw(canvas).text(xy, chr(cp), font=font, embedded_color=True)
        rgba = np.asarray(canvas)
        if not rgba[..., 3].any():
            continue
        digest = hashlib.sha1(rgba.tobytes()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        images.append(to_rgb_square(canvas, size))
        labels.append(cp)
    if not images:
        raise ValueError(f"no emoji could be drawn from {path}")
    return ImageSet("emoji", np.stack(images), np.asarray(labels, np.int64))
