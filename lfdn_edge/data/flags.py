"""``flags`` OOD set: the 262 national and regional flags of ``iso-flags-png-320x240``."""

from __future__ import annotations

from pathlib import Path


from .preprocess import load_image_files
from .containers import ImageSet

PACKAGES = ("iso-flags-png-320x240",)
FLAG_DIR = Path("usr/share/iso-flags-png-320x240")


def build(debs: Path, size: int) -> ImageSet:
    """Every flag PNG (sorted by path), 320x240 stretched to size x size, transparency over black."""
    root = debs / PACKAGES[0] / FLAG_DIR
    files = sorted(root.rglob("*.png"))
    if not files:
        raise FileNotFoundError(f"no flag PNGs under {root}; delete {debs / PACKAGES[0]} to re-fetch")
    return ImageSet("flags", load_image_files(files, size, "flags"))
