"""``buildings``: the city tiles of LinCity-NG (``lincity-ng-data``, GPL-2+): rendered isometric buildings,
roads, rails, power lines, parks and their animation frames.

Every PNG directly in ``usr/share/games/lincity-ng/images/tiles`` (RGBA, mostly 128 or 256 px wide),
decoded with PIL; (nearly) empty images are dropped and equal ones kept once, the first in sorted name order
(:mod:`.distinct`); transparency is composited over black by :func:`to_rgb_square`. Labels: none.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..progress import bar
from .containers import ImageSet
from .distinct import Distinct

PACKAGES = ("lincity-ng-data",)
LICENSE = "GPL-2+ (usr/share/doc/lincity-ng-data/copyright)"
TILE_DIR = Path("usr/share/games/lincity-ng/images/tiles")


def build(debs: Path, size: int) -> ImageSet:
    """The distinct visible tiles (about 350)."""
    root = debs / PACKAGES[0] / TILE_DIR
    files = sorted(root.glob("*.png")) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no tile PNGs under {root}; delete {debs / PACKAGES[0]} to re-fetch")
    distinct = Distinct(size)
    for path in bar(files, "buildings"):
        with Image.open(path) as img:
            distinct.add(img)
    return ImageSet("buildings", distinct.stack("buildings"))
