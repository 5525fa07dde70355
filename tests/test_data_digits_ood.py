"""The second offline benchmark, ``digits-ood`` (issue 16): ID = opencv-doc digits 0-4, near = digits 5-9,
far = Fashion-MNIST and fmnist-ood's far sets other than its digits."""

from __future__ import annotations

import numpy as np
import pytest

from lfdn_edge import defaults
from lfdn_edge.data import BENCHMARKS, load_benchmark, load_digits_ood, load_image_source
from lfdn_edge.data import digits_ood
from lfdn_edge.data import fmnist_ood
from lfdn_edge.data.assemble import _known_far
from lfdn_edge.data.fashion_mnist import fashion_mnist
from lfdn_edge.data.specs import SPEC_HELP
from lfdn_edge.data.subsample import choose

SIZE = 32
COUNTS = {"n_train": 400, "n_cal": 100, "n_test": 200, "n_ood": 120}


@pytest.fixture(scope="module")
def bench():
    return load_digits_ood(size=SIZE, seed=0, progress=False, **COUNTS)


def test_registry_and_help():
    assert set(BENCHMARKS) == {"fmnist-ood", "digits-ood"}
    assert digits_ood.OOD_SETS == ("near", "fashion", "letters", "textures", "icons", "emoji", "flags")
    assert "digits-ood:SET" in SPEC_HELP and "fashion" in SPEC_HELP and "fmnist-ood:SET" in SPEC_HELP
    assert _known_far("digits-ood:fashion") and not _known_far("digits-ood:near")
    assert _known_far("fmnist-ood:digits") and not _known_far("digits-ood:digits")


def test_default_counts_mean_the_benchmarks_own_split():
    assert digits_ood.split_counts(defaults.N_TRAIN, defaults.N_CAL, defaults.N_TEST) == defaults.DIGITS_OOD_SPLIT
    assert sum(defaults.DIGITS_OOD_SPLIT) <= 2500
    assert digits_ood.split_counts(10, 20, 30) == (10, 20, 30)


@pytest.mark.data
def test_structure_classes_and_sizes(bench):
    assert bench.name == "digits-ood"
    assert list(bench.ood) == list(digits_ood.OOD_SETS)
    assert bench.far_ood == digits_ood.FAR_OOD
    assert (len(bench.train), len(bench.cal), len(bench.test)) == (400, 100, 200)
    for s in (bench.train, bench.cal, bench.test):
        assert set(np.unique(s.labels)) == {0, 1, 2, 3, 4}, s.name
    assert set(np.unique(bench.ood["near"].labels)) == {5, 6, 7, 8, 9}
    assert set(np.unique(bench.ood["fashion"].labels)) == set(range(10))
    for name, s in bench.ood.items():
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == (SIZE, SIZE, 3), name
        assert len(s) == min(COUNTS["n_ood"], {"flags": 262}.get(name, 10 ** 6)), name


@pytest.mark.data
def test_default_split_sizes_and_disjointness():
    tr, ca, te = digits_ood.id_split_indices(defaults.N_TRAIN, defaults.N_CAL, defaults.N_TEST, seed=0, size=SIZE)
    assert (len(tr), len(ca), len(te)) == (1500, 300, 700)
    assert not (set(tr) & set(ca)) and not (set(tr) & set(te)) and not (set(ca) & set(te))
    labels = fmnist_ood.full_set("digits", SIZE).labels
    for part in (tr, ca, te):
        assert set(labels[part]) <= set(range(5))
        assert np.all(np.diff(part) > 0)  # sorted, unique
    b = load_benchmark("digits-ood", ["near"], size=SIZE, progress=False)  # the global defaults: the own split
    assert (len(b.train), len(b.cal), len(b.test)) == (1500, 300, 700)
    with pytest.raises(ValueError, match="only 2500 ID digits"):
        digits_ood.id_split_indices(2000, 300, 700, size=SIZE)


@pytest.mark.data
def test_determinism_and_seed(bench):
    again = load_digits_ood(size=SIZE, seed=0, progress=False, **COUNTS)
    for a, b in [(bench.train, again.train), (bench.cal, again.cal), (bench.test, again.test)]:
        np.testing.assert_array_equal(a.images, b.images)
    for name in bench.ood:
        np.testing.assert_array_equal(bench.ood[name].images, again.ood[name].images)
    other = load_digits_ood(size=SIZE, seed=1, sets=["near"], progress=False, **COUNTS)
    assert list(other.ood) == ["near"] and other.far_ood == ()
    assert not np.array_equal(other.train.images, bench.train.images)
    assert not np.array_equal(other.ood["near"].images, bench.ood["near"].images)


@pytest.mark.data
def test_specs_and_sources_match(bench):
    s = load_image_source("digits-ood:fashion", SIZE, limit=COUNTS["n_ood"], seed=0, progress=False)
    assert s.name == "digits-ood:fashion"
    np.testing.assert_array_equal(s.images, bench.ood["fashion"].images)
    rows = choose(10000, COUNTS["n_ood"], 0, "digits-ood/fashion")
    np.testing.assert_array_equal(s.labels, fashion_mnist("test")[1][rows])
    near = load_image_source("digits-ood:near", SIZE, limit=COUNTS["n_ood"], seed=0, progress=False)
    np.testing.assert_array_equal(near.images, bench.ood["near"].images)
    # the far sets reused from fmnist-ood are those sets' images (a seeded subset of them)
    full = fmnist_ood.full_set("flags", SIZE)
    idx = choose(len(full), COUNTS["n_ood"], 0, "digits-ood/flags")
    np.testing.assert_array_equal(bench.ood["flags"].images, full.images[idx])
    with pytest.raises(ValueError, match="unknown digits-ood set"):
        load_image_source("digits-ood:digits", SIZE)
    with pytest.raises(ValueError, match="no OOD set"):
        load_benchmark("digits-ood", ["digits"], size=SIZE)
