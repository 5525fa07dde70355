"""The offline ``fmnist-ood`` benchmark, built only from Debian packages (no internet dataset hubs).

ID: Fashion-MNIST classes 0-5. OOD sets, in this order: ``near`` (Fashion-MNIST test classes 6-9), then
the far-OOD sets ``digits``, ``letters``, ``textures``, ``icons``, ``emoji`` and ``flags`` (one module
each in this package says what it holds). All images go through :func:`to_rgb_square`.

The far-OOD sets are the packaged sets of :mod:`lfdn_edge.data.offline_common` (built in full once per image
size and cached; shared with ``digits-ood``); subsampling happens after loading. Fashion-MNIST itself is parsed
from its IDX files and only the selected images are resized. Subsampling is seeded and independent per set
(see ``subsample``). ID split: ``DEFAULT_SPLIT`` (6000 train / 1000 cal / 2000 test) where a count is not given.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import defaults
from ..progress import progress_enabled
from .containers import Benchmark, ImageSet
from .offline_common import (CACHE_VERSION, PACKAGED_SETS, check_set_name, fmnist_images, fmnist_pool, full_set,
                             prefetch, resolve_split, select_sets, set_cache_path)
from .subsample import choose, split_indices

BENCHMARK = defaults.DATA
ID_CLASSES = (0, 1, 2, 3, 4, 5)
NEAR_CLASSES = (6, 7, 8, 9)
OOD_SETS: tuple[str, ...] = ("near",) + PACKAGED_SETS
FAR_OOD: tuple[str, ...] = PACKAGED_SETS
DEFAULT_SPLIT = (defaults.N_TRAIN, defaults.N_CAL, defaults.N_TEST)  # train / cal / test when not given

__all__ = ["BENCHMARK", "CACHE_VERSION", "DEFAULT_SPLIT", "FAR_OOD", "ID_CLASSES", "NEAR_CLASSES", "OOD_SETS",
           "full_set", "id_test_indices", "id_train_cal_indices", "load_fmnist_ood", "ood_set", "ood_source",
           "set_cache_path"]


def ood_source(name: str, size: int) -> tuple[int, Callable[[np.ndarray], ImageSet]]:
    """``(count, load)`` for set ``name``: ``load(indices)`` returns those images of the full set."""
    check_set_name(BENCHMARK, name, OOD_SETS)
    if name == "near":
        _, _, pool = fmnist_pool("test", NEAR_CLASSES)
        return len(pool), lambda idx: fmnist_images("test", pool[idx], size, "near")
    full = full_set(name, size)
    return len(full), full.subset


def ood_set(name: str, size: int = defaults.INPUT_SIZE, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Set ``name`` at ``size`` px, subsampled to at most ``limit`` images (stream ``fmnist-ood/<name>``)."""
    count, load = ood_source(name, size)
    return load(choose(count, limit, seed, f"{BENCHMARK}/{name}"))


def id_train_cal_indices(n_train: int, n_cal: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the Fashion-MNIST train split used as ``train`` and ``cal`` (disjoint; sorted)."""
    _, _, pool = fmnist_pool("train", ID_CLASSES)
    tr, ca = split_indices(len(pool), [n_train, n_cal], seed, f"{BENCHMARK}/train-cal")
    return pool[tr], pool[ca]


def id_test_indices(n_test: int, seed: int = 0) -> np.ndarray:
    """Rows of the Fashion-MNIST test split used as the ID ``test`` set (sorted)."""
    _, _, pool = fmnist_pool("test", ID_CLASSES)
    if n_test > len(pool):
        raise ValueError(f"n_test={n_test} but the Fashion-MNIST test split has only {len(pool)} images "
                         f"of classes 0-5; lower n_test")
    return pool[choose(len(pool), n_test, seed, f"{BENCHMARK}/test")]


def load_fmnist_ood(size: int = defaults.INPUT_SIZE, n_train: int | None = None, n_cal: int | None = None,
                    n_test: int | None = None, n_ood: int = defaults.N_OOD, seed: int = defaults.DATA_SEED,
                    sets: list[str] | tuple[str, ...] | None = None, progress: bool = True) -> Benchmark:
    """The ``fmnist-ood`` benchmark at ``size`` px.

    ``train`` and ``cal`` are disjoint draws (one permutation, stream ``fmnist-ood/train-cal``) from the
    36000 Fashion-MNIST train images of classes 0-5; ``test`` draws ``n_test`` of the 6000 test images
    of classes 0-5 (stream ``fmnist-ood/test``). A count left as None is the benchmark's own
    (``DEFAULT_SPLIT``: 6000 / 1000 / 2000). Each OOD set keeps at most ``n_ood`` images. ``sets``
    selects OOD sets by name (None: all; an empty list: none; kept in the canonical order ``OOD_SETS``).
    Missing packages are fetched first (see :func:`fetch_debian_packages`). Labels are the
    Fashion-MNIST classes for train/cal/test/near, digit classes for ``digits``, letter indices for
    ``letters`` and code points for ``emoji``. ``progress``: show the download and build bars.
    """
    with progress_enabled(progress):
        return _load_fmnist_ood(size, n_train, n_cal, n_test, n_ood, seed, sets)


def _load_fmnist_ood(size, n_train, n_cal, n_test, n_ood, seed, sets) -> Benchmark:
    n_train, n_cal, n_test = resolve_split(BENCHMARK, DEFAULT_SPLIT, n_train, n_cal, n_test)
    selected = select_sets(BENCHMARK, sets, OOD_SETS)
    prefetch(selected, size)

    tr, ca = id_train_cal_indices(n_train, n_cal, seed)
    train = fmnist_images("train", tr, size, "train")
    cal = fmnist_images("train", ca, size, "cal")
    test = fmnist_images("test", id_test_indices(n_test, seed), size, "test")
    ood = {name: ood_set(name, size, n_ood, seed) for name in selected}
    return Benchmark(BENCHMARK, train, cal, test, ood, tuple(n for n in selected if n in FAR_OOD))
