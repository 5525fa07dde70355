"""``icons`` OOD set: the Oxygen desktop icon theme (package ``oxygen-icon-theme``).

Icons come in several sizes (``base/<n>x<n>/<category>/<name>.png``) and many names are symlinks to
another icon. Symlinks are resolved first and an icon is named by its real file; each name keeps its
largest PNG; names whose largest PNG is under ``MIN_SIZE`` pixels are dropped (too small to tell
anything at 64 px); byte-identical files are kept once. Transparency is composited over black.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from PIL import Image

from .preprocess import load_image_files
from .containers import ImageSet

PACKAGES = ("oxygen-icon-theme",)
ICON_DIR = Path("usr/share/icons/oxygen")
MIN_SIZE = 32
_SIZE_DIR = re.compile(r"^(\d+)x(\d+)$")


def _pixel_size(path: Path) -> int:
    for part in reversed(path.parts):
        m = _SIZE_DIR.match(part)
        if m:
            return int(m.group(1))
    with Image.open(path) as img:
        return max(img.size)


def icon_files(root: Path) -> list[Path]:
    """The chosen real PNG file per icon name (see the module docstring), sorted by name."""
    best: dict[str, tuple[int, Path]] = {}
    for link in sorted(root.rglob("*.png")):
        real = link.resolve()
        if not real.is_file():  # dangling symlink
            continue
        px = _pixel_size(real)
        if real.stem not in best or px > best[real.stem][0]:
            best[real.stem] = (px, real)
    chosen, seen = [], set()
    for name in sorted(best):
        px, path = best[name]
        if px < MIN_SIZE:
            continue
        digest = hashlib.sha1(path.read_bytes()).digest()
        if digest not in seen:
            seen.add(digest)
            chosen.append(path)
    return chosen


def build(debs: Path, size: int) -> ImageSet:
    """One image per distinct icon (about 1300) as (N, size, size, 3) uint8."""
    root = debs / PACKAGES[0] / ICON_DIR
    files = icon_files(root) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no icon PNGs under {root}; delete {debs / PACKAGES[0]} to re-fetch")
    return ImageSet("icons", load_image_files(files, size, "icons"))
