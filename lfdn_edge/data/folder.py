"""User images from a folder tree."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from ..progress import bar, progress_enabled

from .preprocess import to_rgb_square
from .containers import ImageSet
from .subsample import choose

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


def list_images(path: str | Path) -> list[Path]:
    """Image files under ``path`` (recursive, by extension, case-insensitive), sorted."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; pass a folder of images")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _load(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as img:
        img.seek(0)  # first frame of animations
        img = ImageOps.exif_transpose(img)  # camera photos stored rotated
        return to_rgb_square(img, size)


def load_files(files: list[Path], size: int, name: str, where: str | Path) -> ImageSet:
    """Load ``files`` in order; unreadable ones are skipped with one warning that counts them.

    ``ValueError`` if there were files but none could be read; no files give an empty set. ``where`` only
    names the folder in messages.
    """
    images, bad = [], []
    for f in bar(files, f"loading {name}", min_items=500):
        try:
            images.append(_load(f, size))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            bad.append((f, exc))
    if bad:
        shown = "; ".join(f"{p.name}: {type(e).__name__}" for p, e in bad[:3])
        msg = (f"skipped {len(bad)} of {len(files)} unreadable image(s) in {where} "
               f"({shown}{'; ...' if len(bad) > 3 else ''})")
        if not images:
            raise ValueError(f"none of the {len(files)} images in {where} could be read: {msg}")
        warnings.warn(msg, stacklevel=3)
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return ImageSet(name, stacked)


def folder_files(path: str | Path) -> tuple[str, list[Path]]:
    """``(name, files)`` of an image folder: its name and sorted image files; errors if there are none."""
    root = Path(path).expanduser()
    files = list_images(root)
    if not files:
        raise ValueError(f"no images found in {root} (looked recursively for "
                         f"{', '.join(sorted(e[1:] for e in EXTENSIONS))})")
    return root.resolve().name or str(root), files


def image_folder(path: str | Path, size: int, limit: int | None = None, seed: int = 0,
                 name: str | None = None, progress: bool = True) -> ImageSet:
    """Every image under ``path`` (recursively) as an :class:`ImageSet` of ``size`` px.

    Files are taken in sorted path order; with ``limit``, a seeded random subset of at most ``limit``
    files (stream ``folder/<folder name>``) is loaded, kept in path order. Extensions: jpg, jpeg, png, bmp, webp,
    tif, tiff, gif (first frame). EXIF rotation is applied. Unreadable files are skipped with one warning
    that counts them; if none can be read, ``ValueError``. ``name`` defaults to the folder's name.
    Missing folder: ``FileNotFoundError``; no image files in it: ``ValueError``.
    """
    folder_name, files = folder_files(path)
    files = [files[i] for i in choose(len(files), limit, seed, f"folder/{folder_name}")]
    with progress_enabled(progress):
        return load_files(files, size, name or folder_name, Path(path).expanduser())
