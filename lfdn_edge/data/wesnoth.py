"""``units``, ``terrain`` and ``portraits``: three image sets from Battle for Wesnoth (``wesnoth-1.16-data``, GPL-2+).

All three come from ``usr/share/games/wesnoth/1.16/data/core/images`` (the core game; campaign add-on
images are not used):

- ``units``: every unit sprite (72x72 RGBA, animation frames included) under ``units/<race>/``; the files
  directly in ``units/`` (a dice and an unknown-unit placeholder) and the ``transport`` folder (4 ships) are
  left out. The label says the race folder (the index in ``RACES``) and the *unit* the sprite belongs to
  (the group of its animation frames, see :func:`unit_of`): ``race * UNIT_STRIDE + n`` with ``n`` the
  unit's position among its race's units in sorted order (:func:`race_of` recovers the race), so that a
  split can keep a unit's frames together. The sprites are shown as Wesnoth stores them: the team-colour
  pixels are magenta.
- ``terrain``: the hex terrain tiles under ``terrain/`` (any depth) whose opaque part covers at least
  ``MIN_OPAQUE`` of the image (the transition slivers drawn on a hex's edge are left out).
- ``portraits``: the painted character portraits under ``portraits/`` (400x400 RGBA).

Common rules: a file is decoded with PIL; (nearly) empty images are dropped and equal ones kept once,
the first in sorted path order (:mod:`.distinct`); transparency is composited over black
(:func:`to_rgb_square`, as for ``icons`` and ``emoji``) and the image stretched to the requested size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..progress import bar
from .containers import ImageSet
from .distinct import Distinct

PACKAGES = ("wesnoth-1.16-data",)
LICENSE = "GPL-2+ (usr/share/doc/wesnoth-1.16-data/copyright)"
IMAGE_DIR = Path("usr/share/games/wesnoth/1.16/data/core/images")
RACES: tuple[str, ...] = ("human-loyalists", "human-magi", "human-outlaws", "human-peasants", "elves-wood",
                          "dwarves", "drakes", "dunefolk", "goblins", "merfolk", "monsters", "nagas", "ogres",
                          "orcs", "saurians", "trolls", "undead", "undead-necromancers", "undead-skeletal",
                          "woses")
MIN_OPAQUE = 0.5
UNIT_STRIDE = 1000  # label = race * UNIT_STRIDE + unit number within the race


def images_root(debs: Path) -> Path:
    root = debs / PACKAGES[0] / IMAGE_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"no Wesnoth images under {root}; delete {debs / PACKAGES[0]} to re-fetch")
    return root


def unit_of(relative: Path) -> str:
    """The unit a sprite belongs to, from its path under ``units/``: ``<race>/<folder>`` for a sprite in a
    unit's own folder (``dwarves/berserker/berserker-attack-1.png``), else ``<race>/<stem up to the first
    '-' or '+'>`` (``elves-wood/archer+female-bow-attack1.png`` -> ``elves-wood/archer``)."""
    parts = relative.parts
    if len(parts) > 2:
        return f"{parts[0]}/{parts[1]}"
    return f"{parts[0]}/{relative.stem.split('-')[0].split('+')[0]}"


def _decode(paths: list[Path], size: int, desc: str, min_opaque: float = 0.0) -> tuple[np.ndarray, list[int]]:
    """``(images, kept)``: the distinct visible images of ``paths`` (:class:`Distinct`) and their positions."""
    distinct, kept = Distinct(size, min_opaque), []
    for i, path in enumerate(bar(paths, desc)):
        with Image.open(path) as img:
            if distinct.add(img):
                kept.append(i)
    return distinct.stack(desc), kept


def race_of(labels: np.ndarray) -> np.ndarray:
    """The race index (into ``RACES``) of ``units`` labels."""
    return np.asarray(labels, np.int64) // UNIT_STRIDE


def unit_files(debs: Path) -> list[tuple[Path, int]]:
    """``(path, label)`` of every unit sprite, sorted by path (the label as in the module docstring)."""
    root = images_root(debs) / "units"
    found = []
    for path in sorted(root.rglob("*.png")):
        rel = path.relative_to(root)
        if len(rel.parts) >= 2 and rel.parts[0] in RACES:
            found.append((path, RACES.index(rel.parts[0]), unit_of(rel)))
    units: dict[int, list[str]] = {}
    for _, race, unit in found:
        units.setdefault(race, [])
        if unit not in units[race]:
            units[race].append(unit)
    number = {unit: i for names in units.values() for i, unit in enumerate(sorted(names))}
    return [(path, race * UNIT_STRIDE + number[unit]) for path, race, unit in found]


def build_units(debs: Path, size: int) -> ImageSet:
    """Every distinct unit sprite (about 5,600), labelled by race and unit (see the module docstring)."""
    files = unit_files(debs)
    images, kept = _decode([f[0] for f in files], size, "units")
    return ImageSet("units", images, np.asarray([files[i][1] for i in kept], np.int64))


def build_terrain(debs: Path, size: int) -> ImageSet:
    """The distinct terrain tiles that cover at least ``MIN_OPAQUE`` of their square (about 800)."""
    files = sorted((images_root(debs) / "terrain").rglob("*.png"))
    images, _ = _decode(files, size, "terrain", MIN_OPAQUE)
    return ImageSet("terrain", images)


def build_portraits(debs: Path, size: int) -> ImageSet:
    """The distinct painted portraits (about 240)."""
    files = sorted((images_root(debs) / "portraits").rglob("*.png"))
    images, _ = _decode(files, size, "portraits")
    return ImageSet("portraits", images)
