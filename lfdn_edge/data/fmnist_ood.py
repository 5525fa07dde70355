"""The offline ``fmnist-ood`` benchmark, built only from Debian packages (no internet dataset hubs).

ID: Fashion-MNIST classes 0-5. OOD sets, in this order: ``near`` (Fashion-MNIST test classes 6-9), then
the far-OOD sets ``digits``, ``letters``, ``textures``, ``icons``, ``emoji`` and ``flags`` (one module
each in this package says what it holds). All images go through :func:`to_rgb_square`.

The far-OOD sets are built in full once per image size and cached as
``cache_dir()/fmnist-ood/<set>-<size>px-v<CACHE_VERSION>.npz``; subsampling happens after loading.
Fashion-MNIST itself is parsed from its IDX files (well under a second) and only the selected images are
resized, so it is not cached. Subsampling is seeded and independent per set (see ``subsample``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from ..progress import bar, progress_enabled

from . import digits, emoji, flags, icons, letters, textures
from .cache import cache_dir, load_image_set, save_image_set
from .debian import fetch_debian_packages
from .fashion_mnist import PACKAGE as FMNIST_PACKAGE
from .fashion_mnist import fashion_mnist
from .preprocess import to_rgb_square
from .containers import Benchmark, ImageSet
from .subsample import choose, split_indices
from .. import defaults

BENCHMARK = defaults.DATA
CACHE_VERSION = 1  # bump whenever a builder or to_rgb_square changes what it produces
ID_CLASSES = (0, 1, 2, 3, 4, 5)
NEAR_CLASSES = (6, 7, 8, 9)
_PACKAGED = {"digits": digits, "letters": letters, "textures": textures, "icons": icons,
             "emoji": emoji, "flags": flags}
OOD_SETS: tuple[str, ...] = ("near",) + tuple(_PACKAGED)
FAR_OOD: tuple[str, ...] = tuple(_PACKAGED)


def _check_name(name: str) -> None:
    if name not in OOD_SETS:
        raise ValueError(f"unknown {BENCHMARK} set {name!r}; choose from {', '.join(OOD_SETS)}")


def set_cache_path(name: str, size: int) -> Path:
    """Where the full built set ``name`` at ``size`` px is cached."""
    return cache_dir() / BENCHMARK / f"{name}-{size}px-v{CACHE_VERSION}.npz"


def _resize_all(images: np.ndarray, size: int, desc: str) -> np.ndarray:
    out = np.empty((len(images), size, size, 3), np.uint8)
    it = bar(images, desc, min_items=2001)
    for i, img in enumerate(it):
        out[i] = to_rgb_square(Image.fromarray(img, "L"), size)
    return out


def _fmnist_pool(split: str, classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw images, labels and the indices of ``classes`` in Fashion-MNIST ``split``."""
    images, labels = fashion_mnist(split)
    return images, labels, np.flatnonzero(np.isin(labels, classes))


def _fmnist_images(split: str, rows: np.ndarray, size: int, name: str) -> ImageSet:
    images, labels = fashion_mnist(split)
    return ImageSet(name, _resize_all(images[rows], size, name), labels[rows].astype(np.int64))


def full_set(name: str, size: int) -> ImageSet:
    """A far-OOD set in full at ``size`` px: from the cache, else built (fetching packages) and cached."""
    if name not in _PACKAGED:
        raise ValueError(f"{name!r} is not a far-OOD set of {BENCHMARK}; choose from {', '.join(FAR_OOD)}")
    path = set_cache_path(name, size)
    if path.is_file():
        try:
            return load_image_set(path)
        except Exception as exc:  # a damaged cache file is rebuilt, not fatal
            warnings.warn(f"ignoring unreadable cache file {path} ({exc}); rebuilding it", stacklevel=2)
    module = _PACKAGED[name]
    debs = fetch_debian_packages(list(module.PACKAGES))
    built = module.build(debs, size)
    save_image_set(path, built)
    return built


def ood_source(name: str, size: int) -> tuple[int, Callable[[np.ndarray], ImageSet]]:
    """``(count, load)`` for set ``name``: ``load(indices)`` returns those images of the full set."""
    _check_name(name)
    if name == "near":
        _, _, pool = _fmnist_pool("test", NEAR_CLASSES)
        return len(pool), lambda idx: _fmnist_images("test", pool[idx], size, "near")
    full = full_set(name, size)
    return len(full), full.subset


def ood_set(name: str, size: int = defaults.INPUT_SIZE, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Set ``name`` at ``size`` px, subsampled to at most ``limit`` images (stream ``fmnist-ood/<name>``)."""
    count, load = ood_source(name, size)
    return load(choose(count, limit, seed, f"{BENCHMARK}/{name}"))


def id_train_cal_indices(n_train: int, n_cal: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the Fashion-MNIST train split used as ``train`` and ``cal`` (disjoint; sorted)."""
    _, _, pool = _fmnist_pool("train", ID_CLASSES)
    tr, ca = split_indices(len(pool), [n_train, n_cal], seed, f"{BENCHMARK}/train-cal")
    return pool[tr], pool[ca]


def id_test_indices(n_test: int, seed: int = 0) -> np.ndarray:
    """Rows of the Fashion-MNIST test split used as the ID ``test`` set (sorted)."""
    _, _, pool = _fmnist_pool("test", ID_CLASSES)
    if n_test > len(pool):
        raise ValueError(f"n_test={n_test} but the Fashion-MNIST test split has only {len(pool)} images "
                         f"of classes 0-5; lower n_test")
    return pool[choose(len(pool), n_test, seed, f"{BENCHMARK}/test")]


def _prefetch(names: list[str], size: int) -> None:
    """Fetch every package the requested sets still need, in one go (one progress bar)."""
    needed = [FMNIST_PACKAGE]
    for name in names:
        if name in _PACKAGED and not set_cache_path(name, size).is_file():
            needed.extend(_PACKAGED[name].PACKAGES)
    fetch_debian_packages(needed)


def load_fmnist_ood(size: int = defaults.INPUT_SIZE, n_train: int = defaults.N_TRAIN, n_cal: int = defaults.N_CAL,
                    n_test: int = defaults.N_TEST, n_ood: int = defaults.N_OOD, seed: int = defaults.DATA_SEED,
                    sets: list[str] | tuple[str, ...] | None = None, progress: bool = True) -> Benchmark:
    """The ``fmnist-ood`` benchmark at ``size`` px.

    ``train`` and ``cal`` are disjoint draws (one permutation, stream ``fmnist-ood/train-cal``) from the
    36000 Fashion-MNIST train images of classes 0-5; ``test`` draws ``n_test`` of the 6000 test images
    of classes 0-5 (stream ``fmnist-ood/test``). Each OOD set keeps at most ``n_ood`` images. ``sets``
    selects OOD sets by name (None: all; an empty list: none; kept in the canonical order ``OOD_SETS``).
    Missing packages are fetched first (see :func:`fetch_debian_packages`). Labels are the
    Fashion-MNIST classes for train/cal/test/near, digit classes for ``digits``, letter indices for
    ``letters`` and code points for ``emoji``. ``progress``: show the download and build bars.
    """
    with progress_enabled(progress):
        return _load_fmnist_ood(size, n_train, n_cal, n_test, n_ood, seed, sets)


def _load_fmnist_ood(size, n_train, n_cal, n_test, n_ood, seed, sets) -> Benchmark:
    selected = list(OOD_SETS) if sets is None else list(sets)
    for name in selected:
        _check_name(name)
    selected = [n for n in OOD_SETS if n in selected]
    _prefetch(selected, size)

    tr, ca = id_train_cal_indices(n_train, n_cal, seed)
    train = _fmnist_images("train", tr, size, "train")
    cal = _fmnist_images("train", ca, size, "cal")
    test = _fmnist_images("test", id_test_indices(n_test, seed), size, "test")
    ood = {name: ood_set(name, size, n_ood, seed) for name in selected}
    return Benchmark(BENCHMARK, train, cal, test, ood, tuple(n for n in selected if n in FAR_OOD))
