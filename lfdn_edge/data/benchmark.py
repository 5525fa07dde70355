"""One entry point for evaluation data: the offline benchmark or the user's own ID and OOD sources."""

from __future__ import annotations

import warnings
from typing import Sequence

from .offline import BENCHMARK, OOD_SETS, fmnist_ood
from .sets import Benchmark
from .specs import load_image_source
from .subsample import split_indices

FALLBACK_FRACTIONS = (0.7, 0.1, 0.2)  # train / cal / test when a source is smaller than the counts


def _split_counts(n_total: int, n_train: int, n_cal: int, n_test: int, name: str) -> list[int]:
    if n_train + n_cal + n_test <= n_total:
        return [n_train, n_cal, n_test]
    n_cal_f = int(round(FALLBACK_FRACTIONS[1] * n_total))
    n_test_f = int(round(FALLBACK_FRACTIONS[2] * n_total))
    counts = [n_total - n_cal_f - n_test_f, n_cal_f, n_test_f]
    warnings.warn(f"{name} has {n_total} images, fewer than n_train + n_cal + n_test = "
                  f"{n_train + n_cal + n_test}; splitting it 70/10/20 instead: {counts}", stacklevel=3)
    return counts


def _unique_name(name: str, spec: str, taken: dict) -> str:
    if name not in taken:
        return name
    if spec not in taken:
        return spec
    raise ValueError(f"OOD source {spec!r} is given twice")


def load_benchmark(data: str, ood: Sequence[str] = (), size: int = 64, n_train: int = 6000,
                   n_cal: int = 1000, n_test: int = 2000, n_ood: int = 1000, seed: int = 0) -> Benchmark:
    """Build a :class:`Benchmark`.

    ``data == "fmnist-ood"``: the offline benchmark; ``ood`` is empty (all sets) or a subset of its set
    names. Otherwise ``data`` is a source spec (see ``specs``) of ID images, of which at most
    ``n_train + n_cal + n_test`` are loaded (a seeded subset) and split by one seeded
    permutation (stream ``benchmark/<name>``) into ``n_train`` / ``n_cal`` / ``n_test`` images (70/10/20
    with a warning if the source is smaller), and each ``ood`` spec becomes one OOD set of at most
    ``n_ood`` images, keyed by its name (a folder's name; the spec if that name is taken). All OOD sets
    of a custom benchmark count as far-OOD.
    """
    if isinstance(ood, str):
        ood = [ood]
    if data == BENCHMARK:
        unknown = [o for o in ood if o not in OOD_SETS]
        if unknown:
            raise ValueError(f"{BENCHMARK} has no OOD set(s) {unknown}; choose from {', '.join(OOD_SETS)} "
                             f"(or give none for all)")
        return fmnist_ood(size, n_train, n_cal, n_test, n_ood, seed, sets=list(ood) or None)

    # Load no more than the splits need: a big source is subsampled (seeded) while it is read.
    source = load_image_source(data, size, limit=n_train + n_cal + n_test, seed=seed)
    counts = _split_counts(len(source), n_train, n_cal, n_test, source.name)
    tr, ca, te = split_indices(len(source), counts, seed, f"benchmark/{source.name}")
    ood_sets: dict = {}
    for spec in ood:
        loaded = load_image_source(spec, size, limit=n_ood, seed=seed)
        key = _unique_name(loaded.name, spec, ood_sets)
        loaded.name = key
        ood_sets[key] = loaded
    return Benchmark(source.name, source.subset(tr, "train"), source.subset(ca, "cal"),
                     source.subset(te, "test"), ood_sets, tuple(ood_sets))
