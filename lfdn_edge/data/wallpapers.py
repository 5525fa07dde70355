"""``wallpapers``: square crops of the KDE Plasma wallpapers (``plasma-workspace-wallpapers``, GPL-2+).

The package holds about 30 wallpapers (photographs and digital paintings), each as ``usr/share/wallpapers/
<Name>/contents/images/<W>x<H>.<ext>`` in several resolutions (some also a ``images_dark`` variant, not
used). Each wallpaper's largest image (by ``W*H`` in the file name; ties: file name order) is first shrunk
so that its shorter side is ``WORK_SIDE`` px, then cut into ``GRID[0] x GRID[1]`` (rows x columns) square
crops of side ``CROP_FRACTION`` of the shorter side, evenly spaced from edge to edge (they overlap).
(Nearly) black crops are dropped and equal ones kept once (:mod:`.distinct`). Labels: the wallpaper's index in sorted name order.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..progress import bar
from .containers import ImageSet
from .distinct import Distinct

PACKAGES = ("plasma-workspace-wallpapers",)
LICENSE = "GPL-2+ (usr/share/doc/plasma-workspace-wallpapers/copyright)"
WALLPAPER_DIR = Path("usr/share/wallpapers")
GRID = (3, 4)
CROP_FRACTION = 0.5
WORK_SIDE = 512
_RESOLUTION = re.compile(r"^(\d+)x(\d+)$")


def wallpaper_files(root: Path) -> list[Path]:
    """The largest image of each wallpaper, sorted by wallpaper name."""
    chosen = []
    for folder in sorted(p for p in root.iterdir() if (p / "contents" / "images").is_dir()):
        best = None
        for path in sorted((folder / "contents" / "images").iterdir()):
            m = _RESOLUTION.match(path.stem)
            if m and path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                pixels = int(m.group(1)) * int(m.group(2))
                if best is None or pixels > best[0]:
                    best = (pixels, path)
        if best is not None:
            chosen.append(best[1])
    return chosen


def crops(img: Image.Image) -> list[Image.Image]:
    """The ``GRID`` square crops of one wallpaper (see the module docstring), row by row."""
    img = img.convert("RGB")
    scale = WORK_SIDE / min(img.size)
    img = img.resize((max(WORK_SIDE, round(img.size[0] * scale)), max(WORK_SIDE, round(img.size[1] * scale))),
                     Image.Resampling.BILINEAR, reducing_gap=3.0)
    side = round(CROP_FRACTION * min(img.size))
    rows, cols = GRID
    ys = np.linspace(0, img.size[1] - side, rows).round().astype(int)
    xs = np.linspace(0, img.size[0] - side, cols).round().astype(int)
    return [img.crop((int(x), int(y), int(x) + side, int(y) + side)) for y in ys for x in xs]


def build(debs: Path, size: int) -> ImageSet:
    """``GRID`` crops of every wallpaper (about 360), labelled by wallpaper."""
    root = debs / PACKAGES[0] / WALLPAPER_DIR
    files = wallpaper_files(root) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no wallpapers under {root}; delete {debs / PACKAGES[0]} to re-fetch")
    distinct, labels = Distinct(size), []
    for label, path in enumerate(bar(files, "wallpapers")):
        with Image.open(path) as img:
            img.draft("RGB", (WORK_SIDE * 2, WORK_SIDE * 2))  # JPEG: decode at a reduced scale, faster
            pieces = crops(img)
        labels.extend(label for piece in pieces if distinct.add(piece))
    return ImageSet("wallpapers", distinct.stack("wallpapers"), np.asarray(labels, np.int64))
