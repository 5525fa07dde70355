"""``digits`` OOD set: the 5000 MNIST digits of OpenCV's sample image (package ``opencv-doc``)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image
from ..progress import bar

from .preprocess import to_rgb_square
from .containers import ImageSet

PACKAGES = ("opencv-doc",)
DIGITS_PNG = Path("usr/share/doc/opencv-doc/examples/data/digits.png")
CELL = 20        # each digit is a 20x20 cell
PER_CLASS = 500  # classes 0..9 in reading order, 500 each (5 rows of 100 cells)


def _open_sheet(debs: Path) -> Image.Image:
    base = debs / "opencv-doc" / DIGITS_PNG
    if base.is_file():
        return Image.open(base)
    gz = base.with_name(base.name + ".gz")
    if gz.is_file():
        return Image.open(io.BytesIO(gzip.decompress(gz.read_bytes())))
    raise FileNotFoundError(f"digits sheet not found: expected {base} (or {gz.name}); re-fetch the "
                            f"opencv-doc package by deleting {debs / 'opencv-doc'}")


def build(debs: Path, size: int) -> ImageSet:
    """All 5000 digits (labels 0-9) as (5000, size, size, 3) uint8, grey replicated to RGB."""
    sheet = np.asarray(_open_sheet(debs).convert("L"))
    rows, cols = sheet.shape[0] // CELL, sheet.shape[1] // CELL
    if rows * cols != 10 * PER_CLASS or sheet.shape != (rows * CELL, cols * CELL):
        raise ValueError(f"digits sheet has shape {sheet.shape}, expected 5000 cells of {CELL}x{CELL}")
    cells = sheet.reshape(rows, CELL, cols, CELL).transpose(0, 2, 1, 3).reshape(-1, CELL, CELL)
    out = np.empty((len(cells), size, size, 3), np.uint8)
    for i, cell in enumerate(bar(cells, "digits")):
        out[i] = to_rgb_square(Image.fromarray(cell, "L"), size)
    labels = np.repeat(np.arange(10, dtype=np.int64), PER_CLASS)
    return ImageSet("digits", out, labels)
