"""``letters`` OOD set: A-Z and a-z rendered in every DejaVu face (notMNIST-style glyph images).

Each glyph is drawn white on black, cropped to its ink, scaled (aspect kept) so its longer side is
``FILL`` of the image side, and centred, like the digits of MNIST and the letters of notMNIST.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from ..progress import bar

from .preprocess import to_rgb_square
from .containers import ImageSet
from .fonts import font_codepoints

PACKAGES = ("fonts-dejavu-core", "fonts-dejavu-extra")
FONT_DIR = Path("usr/share/fonts/truetype/dejavu")
CHARS = string.ascii_uppercase + string.ascii_lowercase
FILL = 0.8


def font_files(debs: Path) -> list[Path]:
    """All .ttf faces of the DejaVu packages, sorted by file name."""
    faces = sorted((p for pkg in PACKAGES for p in (debs / pkg / FONT_DIR).glob("*.ttf")),
                   key=lambda p: p.name)
    if not faces:
        raise FileNotFoundError(f"no DejaVu .ttf files under {debs}/<{'|'.join(PACKAGES)}>/{FONT_DIR}; "
                                f"delete those folders to re-fetch the packages")
    return faces


def render_glyph(font: ImageFont.FreeTypeFont, char: str, size: int) -> Image.Image | None:
    """``char`` white on a black ``size`` x ``size`` grey image, or None if it draws no ink."""
    fs = font.size
    canvas = Image.new("L", (2 * fs, 2 * fs), 0)
    ImageDraw.Draw(canvas).text((fs // 2, fs // 2), char, fill=255, font=font)
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    scale = FILL * size / max(glyph.size)
    w, h = (max(1, round(d * scale)) for d in glyph.size)
    glyph = glyph.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = Image.new("L", (size, size), 0)
    out.paste(glyph, ((size - w) // 2, (size - h) // 2))
    return out


def build(debs: Path, size: int) -> ImageSet:
    """52 glyphs per face (faces lacking a letter skip it); labels are indices into ``CHARS``."""
    faces = font_files(debs)
    font_px = max(2 * size, 64)  # draw large, then shrink: smooth edges at any size
    images, labels = [], []
    for face in bar(faces, "letters", "font"):
        mapped = font_codepoints(face)
        font = ImageFont.truetype(str(face), font_px, layout_engine=ImageFont.Layout.BASIC)
        for k, ch in enumerate(CHARS):
            if ord(ch) not in mapped:
                continue
            glyph = render_glyph(font, ch, size)
            if glyph is not None:
                images.append(to_rgb_square(glyph, size))
                labels.append(k)
    return ImageSet("letters", np.stack(images), np.asarray(labels, np.int64))
