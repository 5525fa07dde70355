"""The second offline benchmark, ``digits-ood`` (issue 16): ID = opencv-doc digits 0-4, near = digits 5-9,
far = Fashion-MNIST and fmnist-ood's far sets other than its digits."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from lfdn_edge import defaults
from lfdn_edge.data import BENCHMARKS, load_benchmark, load_digits_ood, load_image_source, resolve_split
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
    assert set(BENCHMARKS) == {"fmnist-ood", "digits-ood", "sprites-ood"}
    assert digits_ood.OOD_SETS == ("near", "fashion", "letters", "textures", "icons", "emoji", "flags")
    assert "digits-ood:SET" in SPEC_HELP and "fashion" in SPEC_HELP and "fmnist-ood:SET" in SPEC_HELP
    assert _known_far("digits-ood:fashion") and not _known_far("digits-ood:near")
    assert _known_far("fmnist-ood:digits") and not _known_far("digits-ood:digits")


def test_counts_left_out_mean_the_benchmarks_own_split():
    """None (the CLI's and the loaders' default) is the benchmark's own count; a given count is kept as given,
    fmnist-ood's 6000/1000/2000 included (no silent mapping: digits-ood rejects them, see below)."""
    assert digits_ood.DEFAULT_SPLIT == defaults.DIGITS_OOD_SPLIT and sum(defaults.DIGITS_OOD_SPLIT) <= 2500
    assert digits_ood.split_counts(None, None, None) == defaults.DIGITS_OOD_SPLIT
    assert digits_ood.split_counts(None, 20, None) == (1500, 20, 700)
    assert digits_ood.split_counts(10, 20, 30) == (10, 20, 30)
    assert digits_ood.split_counts(6000, 1000, 2000) == (6000, 1000, 2000)
    assert resolve_split("digits-ood") == defaults.DIGITS_OOD_SPLIT
    assert resolve_split("fmnist-ood") == fmnist_ood.DEFAULT_SPLIT == (defaults.N_TRAIN, defaults.N_CAL,
                                                                       defaults.N_TEST)
    assert resolve_split("/some/folder", n_cal=5) == (defaults.N_TRAIN, 5, defaults.N_TEST)
    assert resolve_split("digits-ood", 100, None, 50) == (100, 300, 50)
    with pytest.raises(ValueError, match=">= 0"):
        resolve_split("digits-ood", -1)
    for load in (load_digits_ood, fmnist_ood.load_fmnist_ood, load_benchmark):
        params = inspect.signature(load).parameters
        assert all(params[k].default is None for k in ("n_train", "n_cal", "n_test")), load


def test_cli_defaults_reach_the_loader_as_the_benchmarks_own_split(monkeypatch, tmp_path, capsys):
    """`lfdn-edge train --data digits-ood` trains on 1500/300/700 and records those counts; explicit counts are
    passed on unchanged (and ones that do not fit are a clear error)."""
    import lfdn_edge.workflow as workflow
    from lfdn_edge.cli import train as train_cli

    seen = []

    class Stop(Exception):
        pass

    def fake_load_benchmark(data, **kw):
        seen.append((data, kw["n_train"], kw["n_cal"], kw["n_test"]))
        raise Stop

    monkeypatch.setattr(workflow, "load_benchmark", fake_load_benchmark)
    args = train_cli.build_parser().parse_args(["--out", "x.pt"])
    assert (args.n_train, args.n_cal, args.n_test) == (None, None, None)
    for argv, want in ((["--data", "digits-ood"], ("digits-ood", 1500, 300, 700)),
                       (["--data", "digits-ood", "--n-cal", "200"], ("digits-ood", 1500, 200, 700)),
                       ([], ("fmnist-ood", 6000, 1000, 2000)),
                       (["--data", "digits-ood", "--n-train", "6000", "--n-cal", "1000", "--n-test", "2000"],
                        ("digits-ood", 6000, 1000, 2000))):
        with pytest.raises(Stop):
            train_cli.main(argv + ["--out", str(tmp_path / "c.pt")])
        assert seen[-1] == want, argv
    help_text = " ".join(train_cli.build_parser().format_help().split())
    assert "1500 for digits-ood" in help_text and "6000 for fmnist-ood" in help_text


def test_recorded_split_of_old_and_new_checkpoints():
    from lfdn_edge.workflow import recorded_split

    new = {"spec": "digits-ood", "requested_n_train": 1500, "requested_n_cal": 300, "requested_n_test": 700}
    assert recorded_split(new) == (1500, 300, 700)
    # written before the counts defaulted to None: the global defaults, which then meant digits-ood's own split
    old = {"spec": "digits-ood", "requested_n_train": 6000, "requested_n_cal": 1000, "requested_n_test": 2000}
    assert recorded_split(old) == (None, None, None)
    assert recorded_split({**old, "spec": "fmnist-ood"}) == (6000, 1000, 2000)
    assert recorded_split({"spec": "digits-ood"}) == (None, None, None)


def test_checkpoint_benchmark_splits_as_trained_or_by_the_sources_own(monkeypatch):
    """The training source is split by the recorded counts; another source by its own split (a fmnist-ood
    checkpoint evaluated on digits-ood does not ask digits-ood for 6000 training images)."""
    from types import SimpleNamespace

    import lfdn_edge.workflow as workflow

    seen = []
    monkeypatch.setattr(workflow, "load_benchmark",
                        lambda spec, ood, **kw: seen.append((spec, kw["n_train"], kw["n_cal"], kw["n_test"])))
    ckpt = SimpleNamespace(feature_config=SimpleNamespace(input_size=SIZE),
                           data={"data": {"spec": "fmnist-ood", "requested_n_train": 6000, "requested_n_cal": 1000,
                                          "requested_n_test": 2000, "seed": 0}})
    workflow.checkpoint_benchmark(ckpt, "fmnist-ood")
    workflow.checkpoint_benchmark(ckpt, "digits-ood")
    workflow.checkpoint_benchmark(ckpt, "digits-ood", n_test=100)
    assert seen == [("fmnist-ood", 6000, 1000, 2000), ("digits-ood", None, None, None),
                    ("digits-ood", None, None, 100)]


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
    tr, ca, te = digits_ood.id_split_indices(seed=0, size=SIZE)
    assert (len(tr), len(ca), len(te)) == (1500, 300, 700)
    assert not (set(tr) & set(ca)) and not (set(tr) & set(te)) and not (set(ca) & set(te))
    labels = fmnist_ood.full_set("digits", SIZE).labels
    for part in (tr, ca, te):
        assert set(labels[part]) <= set(range(5))
        assert np.all(np.diff(part) > 0)  # sorted, unique
    b = load_benchmark("digits-ood", ["near"], size=SIZE, progress=False)  # no counts given: the own split
    assert (len(b.train), len(b.cal), len(b.test)) == (1500, 300, 700)
    with pytest.raises(ValueError, match="only 2500 ID digits"):
        digits_ood.id_split_indices(2000, 300, 700, size=SIZE)
    # fmnist-ood's split given explicitly is not silently replaced by digits-ood's own: it does not fit
    with pytest.raises(ValueError, match="6000 \\+ 1000 \\+ 2000 but there are only 2500 ID digits"):
        load_benchmark("digits-ood", ["near"], size=SIZE, n_train=defaults.N_TRAIN, n_cal=defaults.N_CAL,
                       n_test=defaults.N_TEST, progress=False)


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
