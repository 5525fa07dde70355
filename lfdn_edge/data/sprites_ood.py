"""The offline ``sprites-ood`` benchmark: colour images (issue 27), unlike the grey 28-pixel ``fmnist-ood`` and
``digits-ood``. Built only from Debian packages, fetched and cached like the others.

ID: the unit sprites of Battle for Wesnoth's humans, elves and dwarves (``ID_RACES``: the race folders
human-loyalists, human-magi, human-outlaws, human-peasants, elves-wood and dwarves; 2410 distinct sprites of
91 units, animation frames included; labels = race index in :data:`wesnoth.RACES`, 0-5). OOD sets, in this
order:

- ``near``: the unit sprites of every other race (``NEAR_RACES``: drakes, saurians, undead, orcs, monsters,
  ...; 3234 sprites; labels = race index, 6-19): the same kind of image, other categories;
- far-OOD: ``portraits`` (Wesnoth's painted character portraits, 238), ``terrain`` (Wesnoth hex terrain
  tiles, 810), ``buildings`` (LinCity-NG's rendered isometric city tiles, 352) and ``wallpapers`` (3x4 square
  crops of the 30 KDE Plasma wallpapers, photographs and paintings, 360; labels = wallpaper).

What each set holds and how it is cleaned (pixel-identical images kept once, empty ones dropped, alpha
composited over black, stretched by ``to_rgb_square``) is in :mod:`.wesnoth`, :mod:`.lincity` and
:mod:`.wallpapers`. Every set is built in full once per image size and cached as
``cache_dir()/sprites-ood/<set>-<size>px-v<CACHE_VERSION>.npz`` (``units`` holds ID and near together);
subsampling happens after loading (seeded, stream ``sprites-ood/<set>``, at most ``n_ood`` per OOD set).

The ID split keeps units whole: a unit's animation frames are near copies of each other, so a test sprite
whose unit was trained on would be scored as seen. The ID units are put in one seeded order (stream
``sprites-ood/units``); the first ones go to ``test`` until it holds at least ``n_test`` sprites, the next
ones to ``cal`` until it holds at least ``n_cal``, all the others to ``train``; then each part keeps a seeded
subset of exactly the asked count (streams ``sprites-ood/train`` ...). ``test`` therefore holds units never
seen in training (as ``near`` does, but of the ID races). A count left as None is this benchmark's own
(``DEFAULT_SPLIT`` = ``defaults.SPRITES_OOD_SPLIT``, 1200/300/600); counts that leave ``train`` short raise a
``ValueError``.

Licences: all three packages are GPL-2+ (their ``usr/share/doc/<package>/copyright``; ``LICENSES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import defaults
from ..progress import progress_enabled
from . import lincity, wallpapers, wesnoth
from .cache import cache_dir
from .containers import Benchmark, ImageSet
from .debian import fetch_debian_packages
from .offline_common import CACHE_VERSION, cached_build, check_set_name, resolve_split, select_sets
from .subsample import choose, rng_for

BENCHMARK = "sprites-ood"
CACHE_FOLDER = BENCHMARK
ID_RACES: tuple[str, ...] = ("human-loyalists", "human-magi", "human-outlaws", "human-peasants", "elves-wood",
                             "dwarves")
NEAR_RACES: tuple[str, ...] = tuple(r for r in wesnoth.RACES if r not in ID_RACES)
FAR_OOD: tuple[str, ...] = ("portraits", "terrain", "buildings", "wallpapers")
OOD_SETS: tuple[str, ...] = ("near",) + FAR_OOD
DEFAULT_SPLIT = tuple(defaults.SPRITES_OOD_SPLIT)  # train / cal / test when not given


@dataclass(frozen=True)
class PackagedSet:
    """A cached set: ``build(debs, size)`` from the unpacked Debian packages ``PACKAGES``."""

    PACKAGES: tuple[str, ...]
    build: Callable[[Path, int], ImageSet]
    LICENSE: str


SETS = {"units": PackagedSet(wesnoth.PACKAGES, wesnoth.build_units, wesnoth.LICENSE),
        "portraits": PackagedSet(wesnoth.PACKAGES, wesnoth.build_portraits, wesnoth.LICENSE),
        "terrain": PackagedSet(wesnoth.PACKAGES, wesnoth.build_terrain, wesnoth.LICENSE),
        "buildings": PackagedSet(lincity.PACKAGES, lincity.build, lincity.LICENSE),
        "wallpapers": PackagedSet(wallpapers.PACKAGES, wallpapers.build, wallpapers.LICENSE)}
PACKAGES: tuple[str, ...] = tuple(dict.fromkeys(p for s in SETS.values() for p in s.PACKAGES))
LICENSES = {p: s.LICENSE for s in SETS.values() for p in s.PACKAGES}


def set_cache_path(name: str, size: int) -> Path:
    """Where the full set ``name`` (a key of ``SETS``) at ``size`` px is cached."""
    return cache_dir() / CACHE_FOLDER / f"{name}-{size}px-v{CACHE_VERSION}.npz"


def full_set(name: str, size: int) -> ImageSet:
    """A set of ``SETS`` in full at ``size`` px: from the cache, else built (fetching packages) and cached."""
    if name not in SETS:
        raise ValueError(f"{name!r} is not a {BENCHMARK} image set; choose from {', '.join(SETS)}")
    return cached_build(SETS[name], set_cache_path(name, size), size)


def prefetch(names, size: int) -> None:
    """Fetch, in one go (one progress bar), every package the sets ``names`` still need (``near`` needs ``units``)."""
    needed = []
    for name in names:
        name = "units" if name == "near" else name
        if name in SETS and not set_cache_path(name, size).is_file():
            needed.extend(SETS[name].PACKAGES)
    fetch_debian_packages(needed)


def split_counts(n_train: int | None, n_cal: int | None, n_test: int | None) -> tuple[int, int, int]:
    """The counts actually used: None is this benchmark's own count (``DEFAULT_SPLIT``), a given count is kept."""
    return resolve_split(BENCHMARK, DEFAULT_SPLIT, n_train, n_cal, n_test)


def _race_rows(units: ImageSet, races: tuple[str, ...]) -> np.ndarray:
    wanted = [wesnoth.RACES.index(r) for r in races]
    return np.flatnonzero(np.isin(wesnoth.race_of(units.labels), wanted))


def _as_races(subset: ImageSet) -> ImageSet:
    return ImageSet(subset.name, subset.images, wesnoth.race_of(subset.labels))


def id_split_indices(n_train: int | None = None, n_cal: int | None = None, n_test: int | None = None, seed: int = 0,
                     size: int = defaults.INPUT_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the full ``units`` set used as ``train``, ``cal`` and ``test`` (disjoint, sorted, whole units per
    part before the final subsampling; see the module docstring)."""
    n_train, n_cal, n_test = split_counts(n_train, n_cal, n_test)
    units = full_set("units", size)
    pool = _race_rows(units, ID_RACES)
    groups = units.labels[pool]
    names = np.unique(groups)
    order = names[rng_for(seed, f"{BENCHMARK}/units").permutation(len(names))]
    parts: list[list[int]] = [[], []]  # test, cal; train gets the rest
    k = 0
    for part, need in zip(parts, (n_test, n_cal)):
        while len(part) < need and k < len(order):
            part.extend(np.flatnonzero(groups == order[k]).tolist())
            k += 1
    rest = np.flatnonzero(np.isin(groups, order[k:]))
    chosen = {}
    for split, rows, need in (("test", parts[0], n_test), ("cal", parts[1], n_cal), ("train", rest, n_train)):
        rows = np.sort(np.asarray(rows, np.int64))
        if len(rows) < need:
            raise ValueError(f"{BENCHMARK}: n_train + n_cal + n_test = {n_train} + {n_cal} + {n_test} but there are "
                             f"only {len(pool)} ID sprites of {len(names)} units, split by whole units ({split} "
                             f"got {len(rows)} < {need}); lower the counts or leave them out for this "
                             f"benchmark's own split {'/'.join(map(str, DEFAULT_SPLIT))}")
        chosen[split] = pool[rows[choose(len(rows), need, seed, f"{BENCHMARK}/{split}")]]
    return chosen["train"], chosen["cal"], chosen["test"]


def ood_source(name: str, size: int):
    """``(count, load)`` for set ``name``: ``load(indices)`` returns those images of the full set."""
    check_set_name(BENCHMARK, name, OOD_SETS)
    if name == "near":
        units = full_set("units", size)
        pool = _race_rows(units, NEAR_RACES)
        return len(pool), lambda idx: _as_races(units.subset(pool[np.asarray(idx, dtype=np.int64)], "near"))
    full = full_set(name, size)
    return len(full), full.subset


def ood_set(name: str, size: int = defaults.INPUT_SIZE, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Set ``name`` at ``size`` px, subsampled to at most ``limit`` images (stream ``sprites-ood/<name>``)."""
    count, load = ood_source(name, size)
    return load(choose(count, limit, seed, f"{BENCHMARK}/{name}"))


def load_sprites_ood(size: int = defaults.INPUT_SIZE, n_train: int | None = None, n_cal: int | None = None,
                     n_test: int | None = None, n_ood: int = defaults.N_OOD, seed: int = defaults.DATA_SEED,
                     sets: list[str] | tuple[str, ...] | None = None, progress: bool = True) -> Benchmark:
    """The ``sprites-ood`` benchmark at ``size`` px (see the module docstring for the sets, splits and counts).

    ``sets`` selects OOD sets by name (None: all; an empty list: none; kept in the canonical order
    ``OOD_SETS``). Each OOD set keeps at most ``n_ood`` images. Labels: race index (``wesnoth.RACES``) for
    train/cal/test/near, the wallpaper for ``wallpapers``, none for the other far sets.
    """
    with progress_enabled(progress):
        selected = select_sets(BENCHMARK, sets, OOD_SETS)
        prefetch(["units"] + selected, size)
        units = full_set("units", size)
        tr, ca, te = id_split_indices(n_train, n_cal, n_test, seed, size)
        train, cal, test = (_as_races(units.subset(rows, name)) for rows, name in ((tr, "train"), (ca, "cal"),
                                                                                  (te, "test")))
        ood = {name: ood_set(name, size, n_ood, seed) for name in selected}
        return Benchmark(BENCHMARK, train, cal, test, ood, tuple(n for n in selected if n in FAR_OOD))
