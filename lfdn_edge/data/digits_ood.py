"""The offline ``digits-ood`` benchmark: a second benchmark beside ``fmnist-ood``, from the same Debian packages.

ID: the opencv-doc MNIST digits 0-4 (2500 images, 500 per class). OOD sets, in this order: ``near`` (the
digits 5-9, 2500 images), then the far-OOD sets ``fashion`` (the 10000 Fashion-MNIST test images, all ten
classes), ``letters``, ``textures``, ``icons``, ``emoji`` and ``flags`` (fmnist-ood's far sets other than
its ``digits``: the packaged sets of :mod:`lfdn_edge.data.offline_common`, so the two benchmarks share one cache).

Why this data set: it is the only other labelled, class-structured image collection in the offline sources
(DESIGN.md section 5), so it is the only one where a near-OOD split (unseen classes of the same domain) can be
made; it differs from fmnist-ood in domain (handwriting vs clothes), in size (2500 ID images vs 36000) and in
what is near (other digits). The images are 20x20 cells, stretched like every other set by ``to_rgb_square``.

The ID digits have no train/test split of their own: ``train``, ``cal`` and ``test`` are disjoint draws from
one seeded permutation of the 2500 ID digits (stream ``digits-ood/train-cal-test``). A count left as None is
this benchmark's own (``DEFAULT_SPLIT`` = ``defaults.DIGITS_OOD_SPLIT``, 1500/300/700); a given count is used
as given, and the three must add up to at most 2500 (else a ``ValueError`` says so: fmnist-ood's
6000/1000/2000 do not fit and are not mapped to anything else).
"""

from __future__ import annotations

import numpy as np

from .. import defaults
from ..progress import progress_enabled
from .containers import Benchmark, ImageSet
from .offline_common import (check_set_name, fmnist_images, fmnist_pool, full_set, prefetch, resolve_split,
                             select_sets)
from .subsample import choose, split_indices

BENCHMARK = "digits-ood"
ID_CLASSES = (0, 1, 2, 3, 4)
NEAR_CLASSES = (5, 6, 7, 8, 9)
FAR_OOD: tuple[str, ...] = ("fashion", "letters", "textures", "icons", "emoji", "flags")
OOD_SETS: tuple[str, ...] = ("near",) + FAR_OOD
_FROM_FMNIST_OOD = ("letters", "textures", "icons", "emoji", "flags")  # fmnist-ood's far sets reused as they are
DEFAULT_SPLIT = tuple(defaults.DIGITS_OOD_SPLIT)  # train / cal / test when not given


def split_counts(n_train: int | None, n_cal: int | None, n_test: int | None) -> tuple[int, int, int]:
    """The counts actually used: None is this benchmark's own count (``DEFAULT_SPLIT``), a given count is kept."""
    return resolve_split(BENCHMARK, DEFAULT_SPLIT, n_train, n_cal, n_test)


def _id_pool(size: int) -> tuple[ImageSet, np.ndarray]:
    digits = full_set("digits", size)
    return digits, np.flatnonzero(np.isin(digits.labels, ID_CLASSES))


def id_split_indices(n_train: int | None = None, n_cal: int | None = None, n_test: int | None = None, seed: int = 0,
                     size: int = defaults.INPUT_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the full ``digits`` set (5000 images) used as ``train``, ``cal`` and ``test`` (disjoint; sorted)."""
    n_train, n_cal, n_test = split_counts(n_train, n_cal, n_test)
    _, pool = _id_pool(size)
    if n_train + n_cal + n_test > len(pool):
        raise ValueError(f"{BENCHMARK}: n_train + n_cal + n_test = {n_train} + {n_cal} + {n_test} but there are "
                         f"only {len(pool)} ID digits (classes 0-4); lower the counts or leave them out for "
                         f"this benchmark's own split {'/'.join(map(str, DEFAULT_SPLIT))}")
    parts = split_indices(len(pool), [n_train, n_cal, n_test], seed, f"{BENCHMARK}/train-cal-test")
    return tuple(pool[p] for p in parts)


def ood_source(name: str, size: int):
    """``(count, load)`` for set ``name``: ``load(indices)`` returns those images of the full set."""
    check_set_name(BENCHMARK, name, OOD_SETS)
    if name == "near":
        digits = full_set("digits", size)
        pool = np.flatnonzero(np.isin(digits.labels, NEAR_CLASSES))
        return len(pool), lambda idx: digits.subset(pool[np.asarray(idx, dtype=np.int64)], "near")
    if name == "fashion":
        images, _, rows = fmnist_pool("test", tuple(range(10)))
        return len(rows), lambda idx: fmnist_images("test", rows[np.asarray(idx, dtype=np.int64)], size, "fashion")
    full = full_set(name, size)
    return len(full), full.subset


def ood_set(name: str, size: int = defaults.INPUT_SIZE, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Set ``name`` at ``size`` px, subsampled to at most ``limit`` images (stream ``digits-ood/<name>``)."""
    count, load = ood_source(name, size)
    return load(choose(count, limit, seed, f"{BENCHMARK}/{name}"))


def load_digits_ood(size: int = defaults.INPUT_SIZE, n_train: int | None = None, n_cal: int | None = None,
                    n_test: int | None = None, n_ood: int = defaults.N_OOD, seed: int = defaults.DATA_SEED,
                    sets: list[str] | tuple[str, ...] | None = None, progress: bool = True) -> Benchmark:
    """The ``digits-ood`` benchmark at ``size`` px (see the module docstring for the splits and counts).

    ``sets`` selects OOD sets by name (None: all; an empty list: none; kept in the canonical order
    ``OOD_SETS``). Each OOD set keeps at most ``n_ood`` images. Labels: digit classes for train/cal/test/near,
    Fashion-MNIST classes for ``fashion``, as in fmnist-ood for the others.
    """
    with progress_enabled(progress):
        selected = select_sets(BENCHMARK, sets, OOD_SETS)
        prefetch(["digits"] + [n for n in selected if n in _FROM_FMNIST_OOD], size)
        digits, _ = _id_pool(size)
        tr, ca, te = id_split_indices(n_train, n_cal, n_test, seed, size)
        train, cal, test = digits.subset(tr, "train"), digits.subset(ca, "cal"), digits.subset(te, "test")
        ood = {name: ood_set(name, size, n_ood, seed) for name in selected}
        return Benchmark(BENCHMARK, train, cal, test, ood, tuple(n for n in selected if n in FAR_OOD))
