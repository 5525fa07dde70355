"""One entry point for evaluation data: the offline benchmark or the user's own ID and OOD sources."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from .offline import BENCHMARKS
from .offline_common import resolve_split as resolve_offline_split
from .containers import Benchmark
from .specs import load_image_source, open_source
from .subsample import rng_for
from .. import defaults
from ..progress import progress_enabled

FALLBACK_FRACTIONS = (0.7, 0.1, 0.2)  # train / cal / test when a source is smaller than the counts


def resolve_split(data: str, n_train: int | None = None, n_cal: int | None = None,
                  n_test: int | None = None) -> tuple[int, int, int]:
    """The train / cal / test counts asked of ``data``: a count left as None is the data's own, that is the
    offline benchmark's ``DEFAULT_SPLIT`` (fmnist-ood 6000/1000/2000, digits-ood 1500/300/700,
    sprites-ood 1200/300/600) or, for any
    other source, ``defaults.N_TRAIN``/``N_CAL``/``N_TEST``; a given count is kept as it is."""
    own = BENCHMARKS[data][0].DEFAULT_SPLIT if data in BENCHMARKS else (defaults.N_TRAIN, defaults.N_CAL,
                                                                        defaults.N_TEST)
    return resolve_offline_split(data, own, n_train, n_cal, n_test)


def split_counts(n_total: int, n_train: int, n_cal: int, n_test: int, name: str = "the source") -> list[int]:
    """``[n_train, n_cal, n_test]``, or a 70/10/20 split of ``n_total`` (with a warning) if it is smaller."""
    if min(n_train, n_cal, n_test) < 0:
        raise ValueError(f"n_train, n_cal and n_test must be >= 0, got {n_train}, {n_cal}, {n_test}")
    if n_train + n_cal + n_test <= n_total:
        return [n_train, n_cal, n_test]
    n_cal_f = int(round(FALLBACK_FRACTIONS[1] * n_total))
    n_test_f = int(round(FALLBACK_FRACTIONS[2] * n_total))
    counts = [n_total - n_cal_f - n_test_f, n_cal_f, n_test_f]
    warnings.warn(f"{name} has {n_total} images, fewer than n_train + n_cal + n_test = "
                  f"{n_train + n_cal + n_test}; splitting it 70/10/20 instead: {counts}", stacklevel=3)
    return counts


def split_positions(n_total: int, counts: list[int], seed: int, key: str) -> list[np.ndarray]:
    """Disjoint sorted index sets for train / cal / test from one seeded permutation of the source.

    train and cal are the first ``counts[0]`` and next ``counts[1]`` entries of the permutation; test is
    taken from its END. So for a fixed ``n_train``/``n_cal``/seed the train images do not depend on
    ``n_test``, and a test set never overlaps a train set drawn with a smaller ``n_test``.
    """
    n_train, n_cal, n_test = counts
    perm = rng_for(seed, key).permutation(n_total)
    parts = [perm[:n_train], perm[n_train:n_train + n_cal], perm[n_total - n_test:]]
    return [np.sort(p).astype(np.int64) for p in parts]


def _unique_name(name: str, spec: str, taken: dict) -> str:
    if name not in taken:
        return name
    if spec not in taken:
        return spec
    raise ValueError(f"OOD source {spec!r} is given twice")


def load_benchmark(data: str, ood: Sequence[str] = (), size: int = defaults.INPUT_SIZE,
                   n_train: int | None = None, n_cal: int | None = None, n_test: int | None = None,
                   n_ood: int = defaults.N_OOD, seed: int = defaults.DATA_SEED,
                   with_ood: bool = True, progress: bool = True) -> Benchmark:
    """Build a :class:`Benchmark`.

    ``data == "fmnist-ood"``, ``"digits-ood"`` or ``"sprites-ood"``: an offline benchmark (``offline.BENCHMARKS``); ``ood`` is
    empty (all sets) or a subset of its set names. Otherwise ``data`` is a source spec (see ``specs``) of ID images, split by one seeded
    permutation (stream ``benchmark/<source key>``, see :func:`split_positions`) into ``n_train`` /
    ``n_cal`` / ``n_test`` images (70/10/20 with a warning if the source is smaller); only the selected
    images are decoded. Each ``ood`` spec becomes one OOD set of at most ``n_ood`` images, keyed by its
    name (a folder's name; the spec itself if that name is taken). All OOD sets of a custom benchmark
    are far-OOD only if they are an offline benchmark's far sets (``fmnist-ood:digits``, ``digits-ood:fashion``, ...): a user's folder may be near. ``with_ood=False`` loads no OOD set at all (training needs only the ID splits).
    A count left as None is the data's own (:func:`resolve_split`: the offline benchmark's split, else
    ``defaults.N_TRAIN``/``N_CAL``/``N_TEST``); a given count is honoured or, where the offline benchmark
    cannot honour it, rejected with a ``ValueError``.
    ``progress``: show the loaders' progress bars (downloads, decoding).
    """
    with progress_enabled(progress):
        return _load_benchmark(data, ood, size, n_train, n_cal, n_test, n_ood, seed, with_ood)


def _load_benchmark(data, ood, size, n_train, n_cal, n_test, n_ood, seed, with_ood) -> Benchmark:
    if isinstance(ood, str):
        ood = [ood]
    if data in BENCHMARKS:
        module, load = BENCHMARKS[data]
        unknown = [o for o in ood if o not in module.OOD_SETS]
        if unknown:
            raise ValueError(f"{data} has no OOD set(s) {unknown}; choose from {', '.join(module.OOD_SETS)} "
                             f"(or give none for all)")
        return load(size, n_train, n_cal, n_test, n_ood, seed, sets=(list(ood) or None) if with_ood else [])

    n_train, n_cal, n_test = resolve_split(data, n_train, n_cal, n_test)
    source = open_source(data, size)
    counts = split_counts(source.count, n_train, n_cal, n_test, source.name)
    tr, ca, te = split_positions(source.count, counts, seed, f"benchmark/{source.key}")
    train, cal, test = (source.load(idx) for idx in (tr, ca, te))
    train.name, cal.name, test.name = "train", "cal", "test"
    ood_sets: dict = {}
    far = []
    for spec in (ood if with_ood else ()):
        loaded = load_image_source(spec, size, limit=n_ood, seed=seed)
        key = _unique_name(loaded.name, spec, ood_sets)
        loaded.name = key
        ood_sets[key] = loaded
        if _known_far(spec):
            far.append(key)
    return Benchmark(source.name, train, cal, test, ood_sets, tuple(far))


def _known_far(spec: str) -> bool:
    """Only the offline benchmarks' far sets (``fmnist-ood:digits``, ``digits-ood:fashion``, ...) are known to be
    far-OOD; how far a user's folder is from the ID data is not known, so it enters the mean over OOD sets, not a
    far-OOD mean."""
    kind, _, name = spec.partition(":")
    return kind in BENCHMARKS and name in BENCHMARKS[kind][0].FAR_OOD
