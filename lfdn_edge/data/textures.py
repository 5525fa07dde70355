"""``textures`` OOD set: surface textures of the OpenArena game (package ``openarena-081-textures``).

Taken from the zip ``pak4-textures.pk3``: JPEG/TGA/PNG members whose decoded mode is plain RGB (RGBA
members are decals and masks), at least ``MIN_SIDE`` pixels on the short side, skipping sky boxes
(``env/``) and any member whose path contains one of ``SKIP_WORDS`` (effects, skies, lens flares, tool
textures, glow and blend maps), with byte-identical duplicates dropped.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from ..progress import bar

from .preprocess import to_rgb_square
from .containers import ImageSet

PACKAGES = ("openarena-081-textures",)
PK3 = Path("usr/share/games/openarena/baseoa/pak4-textures.pk3")
EXTENSIONS = (".jpg", ".jpeg", ".tga", ".png")
SKIP_WORDS = ("sfx", "skies", "flares", "common", "glow", "blend")
SKIP_PREFIXES = ("env/",)
MIN_SIDE = 32


def candidate_members(names: list[str]) -> list[str]:
    """Zip member names that pass the extension, folder and word filters, sorted."""
    keep = []
    for name in names:
        low = name.lower()
        if not low.endswith(EXTENSIONS) or low.startswith(SKIP_PREFIXES):
            continue
        if any(word in low for word in SKIP_WORDS):
            continue
        keep.append(name)
    return sorted(keep)


def build(debs: Path, size: int) -> ImageSet:
    """Every kept texture as (N, size, size, 3) uint8 (about 1050)."""
    pk3 = debs / PACKAGES[0] / PK3
    if not pk3.is_file():
        raise FileNotFoundError(f"texture archive not found: {pk3}; delete {debs / PACKAGES[0]} to re-fetch")
    images, seen = [], set()
    with zipfile.ZipFile(pk3) as zf:
        members = candidate_members(zf.namelist())
        for name in bar(members, "textures"):
            raw = zf.read(name)
            digest = hashlib.sha1(raw).digest()
            if digest in seen:
                continue
            with Image.open(io.BytesIO(raw)) as img:
                if img.mode != "RGB" or min(img.size) < MIN_SIDE:
                    continue
                seen.add(digest)
                images.append(to_rgb_square(img, size))
    if not images:
        raise ValueError(f"no usable textures found in {pk3}")
    return ImageSet("textures", np.stack(images))
