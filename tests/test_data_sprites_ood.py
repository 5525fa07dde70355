"""The third offline benchmark, ``sprites-ood`` (issue 27): colour images. ID = Wesnoth unit sprites of the
humans, elves and dwarves; near = the other races' sprites; far = Wesnoth portraits and terrain tiles,
LinCity-NG city tiles, crops of the KDE Plasma wallpapers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfdn_edge import defaults
from lfdn_edge.data import BENCHMARKS, load_benchmark, load_image_source, load_sprites_ood, resolve_split
from lfdn_edge.data import fmnist_ood, sprites_ood, wallpapers, wesnoth
from lfdn_edge.data.assemble import _known_far
from lfdn_edge.data.distinct import Distinct
from lfdn_edge.data.specs import SPEC_HELP
from lfdn_edge.data.subsample import choose

SIZE = 32
COUNTS = {"n_train": 400, "n_cal": 100, "n_test": 200, "n_ood": 150}
# what fmnist-ood / digits-ood are built from (DESIGN.md section 5): the colour benchmark uses none of them
EXISTING = {"dataset-fashion-mnist", "opencv-doc", "fonts-dejavu-core", "fonts-dejavu-extra", "openarena-081-textures",
            "oxygen-icon-theme", "fonts-noto-color-emoji", "iso-flags-png-320x240"}
FULL_COUNTS = {"portraits": 238, "terrain": 810, "buildings": 352, "wallpapers": 360}
N_ID, N_NEAR, N_ID_UNITS = 2410, 3234, 91


def digest(img: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).digest()


def foreground_chroma(images: np.ndarray) -> np.ndarray:
    """Per image: mean of max(R,G,B) - min(R,G,B) over the pixels brighter than 32 (0 for a grey image)."""
    im = images.astype(np.int16)
    chroma, lit = im.max(-1) - im.min(-1), im.max(-1) > 32
    return np.array([c[m].mean() if m.any() else 0.0 for c, m in zip(chroma, lit)])


@pytest.fixture(scope="module")
def bench():
    return load_sprites_ood(size=SIZE, seed=0, progress=False, **COUNTS)


# ------------------------------------------------------------------------------ no data needed

def test_registry_help_and_far_sets():
    assert "sprites-ood" in BENCHMARKS and BENCHMARKS["sprites-ood"][0] is sprites_ood
    assert sprites_ood.OOD_SETS == ("near", "portraits", "terrain", "buildings", "wallpapers")
    assert sprites_ood.FAR_OOD == sprites_ood.OOD_SETS[1:]
    assert "sprites-ood:SET" in SPEC_HELP and "wallpapers" in SPEC_HELP
    assert _known_far("sprites-ood:terrain") and not _known_far("sprites-ood:near")
    assert not _known_far("sprites-ood:textures")


def test_packages_are_exactly_its_own_and_none_of_the_other_benchmarks():
    pkgs = set(sprites_ood.PACKAGES) | {p for s in sprites_ood.SETS.values() for p in s.PACKAGES}
    assert pkgs == {"wesnoth-1.16-data", "lincity-ng-data", "plasma-workspace-wallpapers"}
    assert not pkgs & EXISTING   # the exact set above: nothing else is ever fetched
    assert set(sprites_ood.LICENSES) == pkgs and all("GPL-2+" in v for v in sprites_ood.LICENSES.values())


def test_prefetch_asks_only_for_its_own_packages(monkeypatch, tmp_path):
    """With an empty cache, loading every set asks apt for these three packages and nothing else."""
    monkeypatch.setenv("LFDN_EDGE_CACHE", str(tmp_path))
    asked = []
    monkeypatch.setattr(sprites_ood, "fetch_debian_packages", lambda pkgs: asked.extend(pkgs))
    sprites_ood.prefetch(["units"] + list(sprites_ood.OOD_SETS), SIZE)
    assert set(asked) == set(sprites_ood.PACKAGES)


def test_categories_as_documented():
    assert sprites_ood.ID_RACES == ("human-loyalists", "human-magi", "human-outlaws", "human-peasants",
                                    "elves-wood", "dwarves")
    assert set(sprites_ood.ID_RACES) | set(sprites_ood.NEAR_RACES) == set(wesnoth.RACES)
    assert not set(sprites_ood.ID_RACES) & set(sprites_ood.NEAR_RACES)
    assert [wesnoth.RACES.index(r) for r in sprites_ood.ID_RACES] == list(range(6))


def test_unit_of_groups_animation_frames():
    assert wesnoth.unit_of(Path("dwarves/berserker/berserker-attack-1.png")) == "dwarves/berserker"
    assert wesnoth.unit_of(Path("elves-wood/archer+female-bow-attack1.png")) == "elves-wood/archer"
    assert wesnoth.unit_of(Path("elves-wood/archer-idle-3.png")) == "elves-wood/archer"
    assert wesnoth.unit_of(Path("dwarves/arcanister.png")) == "dwarves/arcanister"
    np.testing.assert_array_equal(wesnoth.race_of([0, 17, 5 * wesnoth.UNIT_STRIDE + 3]), [0, 0, 5])


def test_split_counts_and_cli_defaults(monkeypatch, tmp_path):
    assert sprites_ood.DEFAULT_SPLIT == defaults.SPRITES_OOD_SPLIT == (1200, 300, 600)
    assert sum(defaults.SPRITES_OOD_SPLIT) <= N_ID
    assert resolve_split("sprites-ood") == (1200, 300, 600)
    assert resolve_split("sprites-ood", None, 50, None) == (1200, 50, 600)
    import lfdn_edge.workflow as workflow
    from lfdn_edge.cli import train as train_cli

    class Stop(Exception):
        pass

    seen = []

    def fake_load_benchmark(data, **kw):
        seen.append((data, kw["n_train"], kw["n_cal"], kw["n_test"]))
        raise Stop

    monkeypatch.setattr(workflow, "load_benchmark", fake_load_benchmark)
    with pytest.raises(Stop):
        train_cli.main(["--data", "sprites-ood", "--out", str(tmp_path / "c.pt")])
    assert seen == [("sprites-ood", 1200, 300, 600)]
    help_text = " ".join(train_cli.build_parser().format_help().split())
    assert "1200 for sprites-ood" in help_text and "'sprites-ood'" in help_text


def test_bad_set_names_are_rejected_clearly():
    with pytest.raises(ValueError, match="unknown sprites-ood set 'textures'.*choose from near, portraits"):
        load_image_source("sprites-ood:textures", SIZE)
    with pytest.raises(ValueError, match="no OOD set"):
        load_benchmark("sprites-ood", ["icons"], size=SIZE)
    with pytest.raises(ValueError, match="unknown sprites-ood set"):
        load_sprites_ood(size=SIZE, sets=["units"], progress=False)
    with pytest.raises(ValueError, match="not a sprites-ood image set"):
        sprites_ood.full_set("near", SIZE)


def test_distinct_drops_empty_dark_and_equal_images():
    d = Distinct(8)
    red = Image.new("RGBA", (16, 16), (200, 30, 30, 255))
    assert d.add(red) and not d.add(red.copy())                         # same pixels
    assert not d.add(Image.new("RGBA", (16, 16), (200, 30, 30, 0)))     # fully transparent
    assert not d.add(Image.new("RGB", (16, 16), (5, 5, 5)))             # black
    bigger = red.resize((32, 32))                                       # other pixels, same 8 px result
    assert not d.add(bigger)
    assert d.add(Image.new("RGB", (16, 16), (30, 200, 30)))
    assert d.stack("t").shape == (2, 8, 8, 3)
    half = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    half.paste((30, 30, 200, 255), (0, 0, 16, 4))                       # a quarter opaque
    assert not Distinct(8, min_opaque=0.5).add(half) and Distinct(8).add(half)


def test_wallpaper_crops_cover_the_image():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1920, 3), np.uint8))
    pieces = wallpapers.crops(img)
    assert len(pieces) == wallpapers.GRID[0] * wallpapers.GRID[1]
    side = round(wallpapers.CROP_FRACTION * wallpapers.WORK_SIDE)
    assert all(p.size == (side, side) for p in pieces)


def test_chroma_measure_is_zero_on_grey():
    grey = np.repeat(np.random.default_rng(0).integers(0, 255, (4, 8, 8, 1), np.uint8), 3, axis=-1)
    assert foreground_chroma(grey).max() == 0


# ------------------------------------------------------------------------------ on the packages

@pytest.mark.data
def test_full_sets_counts_shapes_and_labels():
    units = sprites_ood.full_set("units", SIZE)
    race = wesnoth.race_of(units.labels)
    assert units.images.dtype == np.uint8 and units.images.shape[1:] == (SIZE, SIZE, 3)
    assert (race < 6).sum() == N_ID and (race >= 6).sum() == N_NEAR
    assert set(race.tolist()) == set(range(len(wesnoth.RACES)))
    assert len(np.unique(units.labels[race < 6])) == N_ID_UNITS
    for name, n in FULL_COUNTS.items():
        s = sprites_ood.full_set(name, SIZE)
        assert len(s) == n and s.images.dtype == np.uint8 and s.images.shape[1:] == (SIZE, SIZE, 3), name
    assert set(sprites_ood.full_set("wallpapers", SIZE).labels.tolist()) == set(range(30))


@pytest.mark.data
def test_images_are_colour():
    """Measured at 32 px (foreground chroma, mean / share of images >= 10): units 45 / 0.996, portraits 31 /
    0.94, terrain 41 / 0.86, buildings 28 / 0.76, wallpapers 75 / 0.93; a grey image scores 0."""
    for name in sprites_ood.SETS:
        fg = foreground_chroma(sprites_ood.full_set(name, SIZE).images)
        assert fg.mean() >= 20 and (fg >= 10).mean() >= 0.7, (name, fg.mean(), (fg >= 10).mean())
    fm = fmnist_ood.full_set("digits", SIZE).images[:200] if fmnist_ood.set_cache_path("digits", SIZE).is_file() \
        else None
    if fm is not None:  # the grey benchmarks' images fail the same bound
        assert foreground_chroma(fm).mean() < 1


@pytest.mark.data
def test_no_identical_images_within_or_across_sets():
    owner: dict[bytes, str] = {}
    for name in sprites_ood.SETS:
        for i, img in enumerate(sprites_ood.full_set(name, SIZE).images):
            key = digest(img)
            assert key not in owner, f"{name}[{i}] equals an image of {owner.get(key)}"
            owner[key] = name


@pytest.mark.data
def test_benchmark_structure(bench):
    assert bench.name == "sprites-ood" and list(bench.ood) == list(sprites_ood.OOD_SETS)
    assert bench.far_ood == sprites_ood.FAR_OOD
    assert (len(bench.train), len(bench.cal), len(bench.test)) == (400, 100, 200)
    for s in (bench.train, bench.cal, bench.test):
        assert set(s.labels.tolist()) <= set(range(6)), s.name
    assert set(bench.ood["near"].labels.tolist()) <= set(range(6, len(wesnoth.RACES)))
    for name, s in bench.ood.items():
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == (SIZE, SIZE, 3), name
        assert len(s) == min(COUNTS["n_ood"], FULL_COUNTS.get(name, 10 ** 6)), name
    ids = {digest(im) for s in (bench.train, bench.cal, bench.test) for im in s.images}
    assert len(ids) == 700
    for name, s in bench.ood.items():
        assert not ids & {digest(im) for im in s.images}, name


@pytest.mark.data
def test_default_split_keeps_units_whole():
    tr, ca, te = sprites_ood.id_split_indices(seed=0, size=SIZE)
    assert (len(tr), len(ca), len(te)) == (1200, 300, 600)
    labels = sprites_ood.full_set("units", SIZE).labels
    units = [set(labels[p].tolist()) for p in (tr, ca, te)]
    assert not units[0] & units[1] and not units[0] & units[2] and not units[1] & units[2]
    races = set(wesnoth.race_of(labels[np.concatenate([tr, ca, te])]).tolist())
    assert races == set(range(6))
    assert set(wesnoth.race_of(labels[tr]).tolist()) == set(range(6))
    for p in (tr, ca, te):
        assert np.all(np.diff(p) > 0)
    b = load_benchmark("sprites-ood", ["portraits"], size=SIZE, progress=False)  # no counts: the own split
    assert (len(b.train), len(b.cal), len(b.test)) == (1200, 300, 600)
    with pytest.raises(ValueError, match="split by whole units"):
        sprites_ood.id_split_indices(2000, 300, 600, size=SIZE)


@pytest.mark.data
def test_determinism_and_seed(bench, monkeypatch):
    again = load_sprites_ood(size=SIZE, seed=0, progress=False, **COUNTS)
    for a, b in [(bench.train, again.train), (bench.cal, again.cal), (bench.test, again.test)]:
        np.testing.assert_array_equal(a.images, b.images)
    for name in bench.ood:
        np.testing.assert_array_equal(bench.ood[name].images, again.ood[name].images)
    other = load_sprites_ood(size=SIZE, seed=1, sets=["near"], progress=False, **COUNTS)
    assert list(other.ood) == ["near"] and other.far_ood == ()
    assert not np.array_equal(other.train.images, bench.train.images)
    assert not np.array_equal(other.ood["near"].images, bench.ood["near"].images)
    # building again from the unpacked packages gives the cached sets, pixel for pixel
    from lfdn_edge.data.cache import cache_dir

    debs = cache_dir() / "debs"
    for name in ("units", "buildings", "wallpapers"):
        rebuilt = sprites_ood.SETS[name].build(debs, SIZE)
        cached = sprites_ood.full_set(name, SIZE)
        np.testing.assert_array_equal(rebuilt.images, cached.images)
        np.testing.assert_array_equal(rebuilt.labels, cached.labels)


@pytest.mark.data
def test_specs_match_the_benchmark(bench):
    for name in ("near", "wallpapers"):
        s = load_image_source(f"sprites-ood:{name}", SIZE, limit=COUNTS["n_ood"], seed=0, progress=False)
        assert s.name == f"sprites-ood:{name}"
        np.testing.assert_array_equal(s.images, bench.ood[name].images)
    full = sprites_ood.full_set("terrain", SIZE)
    idx = choose(len(full), COUNTS["n_ood"], 0, "sprites-ood/terrain")
    np.testing.assert_array_equal(bench.ood["terrain"].images, full.images[idx])
