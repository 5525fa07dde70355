"""Tests of lfdn_edge.data on real data from Debian packages.

Tests marked ``data`` need the packages (fetched once with ``apt-get download`` into the user cache,
``$LFDN_EDGE_CACHE`` or ``~/.cache/lfdn-edge``); the rest run anywhere.
"""

from __future__ import annotations

import gzip
import pickle
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfdn_edge.data import (Benchmark, ImageSet, cache_dir, fetch_debian_packages, image_folder, load_fmnist_ood,
                            load_benchmark, load_image_source, to_rgb_square)
from lfdn_edge.data import debian
from lfdn_edge.data import fmnist_ood as fmnist_ood_module
from lfdn_edge.data import offline_common
from lfdn_edge.data.fashion_mnist import fashion_mnist
from lfdn_edge.data.idx import parse_idx, read_idx

SIZE = 64
COUNTS = {"n_train": 600, "n_cal": 200, "n_test": 300, "n_ood": 150}
# Full-set sizes from the packages (Debian 12); ranges where the count depends on filtering rules.
EXPECTED_FULL = {"digits": (5000, 5000), "letters": (1144, 1144), "textures": (900, 1200),
                 "icons": (1100, 1450), "emoji": (1250, 1500), "flags": (262, 262)}


@pytest.fixture(scope="session")
def bench() -> Benchmark:
    return load_fmnist_ood(size=SIZE, seed=0, **COUNTS)


@pytest.fixture(scope="session")
def debs() -> Path:
    return fetch_debian_packages(["dataset-fashion-mnist", "iso-flags-png-320x240", "oxygen-icon-theme",
                                  "fonts-dejavu-core"])


def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return header + arr.tobytes()


# ---------------------------------------------------------------- idx + Fashion-MNIST


def test_parse_idx_roundtrip_and_bad_magic(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(_idx_bytes(arr, 0x08)), arr)
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    np.testing.assert_array_equal(parse_idx(_idx_bytes(big, 0x0C)), big.astype(np.int32))
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(arr, 0x08)))
    np.testing.assert_array_equal(read_idx(path, expect_ndim=3), arr)
    with pytest.raises(ValueError, match="not an IDX file"):
        parse_idx(b"\x1f\x8b\x08\x03" + bytes(8))
    with pytest.raises(ValueError, match="data bytes follow"):
        parse_idx(_idx_bytes(arr, 0x08)[:-1])
    with pytest.raises(ValueError, match="expected a 1-D"):
        read_idx(path, expect_ndim=1)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing.gz")


@pytest.mark.data
def test_fashion_mnist_shapes_and_labels():
    tr_x, tr_y = fashion_mnist("train")
    te_x, te_y = fashion_mnist("test")
    assert tr_x.shape == (60000, 28, 28) and te_x.shape == (10000, 28, 28)
    assert tr_x.dtype == np.uint8 and tr_y.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(tr_y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(te_y), [1000] * 10)
    assert 50 < tr_x.mean() < 100  # light garments on a black background
    assert not tr_x.flags.writeable  # shared, memoised arrays


# ---------------------------------------------------------------- the benchmark


@pytest.mark.data
def test_benchmark_structure(bench):
    assert bench.name == "fmnist-ood"
    assert list(bench.ood) == ["near", "digits", "letters", "textures", "icons", "emoji", "flags"]
    assert bench.far_ood == ("digits", "letters", "textures", "icons", "emoji", "flags")
    assert (len(bench.train), len(bench.cal), len(bench.test)) == (600, 200, 300)
    for s in [bench.train, bench.cal, bench.test, *bench.ood.values()]:
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == (SIZE, SIZE, 3), s.name
        assert 0 < len(s) <= max(600, COUNTS["n_ood"]), s.name
    for s in (bench.train, bench.cal, bench.test):
        assert set(np.unique(s.labels)) <= set(range(6))
    assert set(np.unique(bench.ood["near"].labels)) == {6, 7, 8, 9}
    assert all(len(s) == COUNTS["n_ood"] for s in bench.ood.values())
    # Fashion-MNIST is grey: three equal channels.
    assert (bench.train.images[..., 0] == bench.train.images[..., 2]).all()


@pytest.mark.data
def test_full_set_counts():
    for name, (lo, hi) in EXPECTED_FULL.items():
        s = fmnist_ood_module.full_set(name, SIZE)
        assert lo <= len(s) <= hi, (name, len(s))
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == (SIZE, SIZE, 3)
        assert s.images.mean() > 5, name  # not blank
    digits = fmnist_ood_module.full_set("digits", SIZE)
    np.testing.assert_array_equal(np.bincount(digits.labels), [500] * 10)


@pytest.mark.data
def test_train_cal_disjoint_and_match_source(bench):
    tr, ca = fmnist_ood_module.id_train_cal_indices(COUNTS["n_train"], COUNTS["n_cal"], seed=0)
    assert len(tr) == 600 and len(ca) == 200 and not set(tr) & set(ca)
    images, labels = fashion_mnist("train")
    assert set(labels[tr]) <= set(range(6)) and set(labels[ca]) <= set(range(6))
    np.testing.assert_array_equal(bench.train.labels, labels[tr])
    np.testing.assert_array_equal(bench.train.images[7], to_rgb_square(Image.fromarray(images[tr[7]]), SIZE))
    te = fmnist_ood_module.id_test_indices(COUNTS["n_test"], seed=0)
    np.testing.assert_array_equal(bench.test.labels, fashion_mnist("test")[1][te])
    # train does not depend on the other counts
    tr2, _ = fmnist_ood_module.id_train_cal_indices(COUNTS["n_train"], 50, seed=0)
    np.testing.assert_array_equal(tr, tr2)


@pytest.mark.data
def test_determinism(bench):
    again = load_fmnist_ood(size=SIZE, seed=0, **COUNTS)
    for a, b in [(bench.train, again.train), (bench.cal, again.cal), (bench.test, again.test)]:
        np.testing.assert_array_equal(a.images, b.images)
    for name in bench.ood:
        np.testing.assert_array_equal(bench.ood[name].images, again.ood[name].images)
    other = load_fmnist_ood(size=SIZE, seed=1, sets=["digits"], **COUNTS)
    assert list(other.ood) == ["digits"] and other.far_ood == ("digits",)
    assert not np.array_equal(other.train.images, bench.train.images)
    assert not np.array_equal(other.ood["digits"].images, bench.ood["digits"].images)


@pytest.mark.data
def test_spec_matches_benchmark_subset(bench):
    s = load_image_source("fmnist-ood:emoji", SIZE, limit=COUNTS["n_ood"], seed=0)
    assert s.name == "fmnist-ood:emoji"
    np.testing.assert_array_equal(s.images, bench.ood["emoji"].images)


@pytest.mark.data
def test_load_benchmark_fmnist_selects_sets():
    b = load_benchmark("fmnist-ood", ["flags", "near"], size=SIZE, n_train=10, n_cal=5, n_test=5, n_ood=300)
    assert list(b.ood) == ["near", "flags"] and b.far_ood == ("flags",)
    assert len(b.ood["near"]) == 300 and len(b.ood["flags"]) == 262  # fewer than n_ood: all of them
    with pytest.raises(ValueError, match="no OOD set"):
        load_benchmark("fmnist-ood", ["flags", "cifar10"])


@pytest.mark.data
def test_cache_roundtrip(monkeypatch, tmp_path):
    (tmp_path / "debs").symlink_to(cache_dir() / "debs")  # reuse fetched packages
    monkeypatch.setenv("LFDN_EDGE_CACHE", str(tmp_path))
    built = fmnist_ood_module.full_set("flags", 24)
    path = fmnist_ood_module.set_cache_path("flags", 24)
    assert path.parent == tmp_path / "fmnist-ood" and f"v{fmnist_ood_module.CACHE_VERSION}" in path.name
    assert path.is_file() and not list(path.parent.glob("*.tmp"))

    def no_build(*a, **k):
        raise AssertionError("should come from the cache")
    monkeypatch.setattr(offline_common.PACKAGED["flags"], "build", no_build)
    cached = fmnist_ood_module.full_set("flags", 24)
    np.testing.assert_array_equal(built.images, cached.images)
    assert cached.name == "flags" and cached.images.shape == (262, 24, 24, 3)


# ---------------------------------------------------------------- preprocessing


@pytest.mark.data
def test_to_rgb_square_alpha_grey_and_stretch(debs):
    icon = next(p for p in sorted((debs / "oxygen-icon-theme").rglob("48x48/*/*.png")) if not p.is_symlink())
    rgba = np.asarray(Image.open(icon).convert("RGBA"))
    out = to_rgb_square(Image.open(icon), 48)
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8
    clear = rgba[..., 3] == 0
    assert clear.any() and (out[clear] == 0).all()  # transparent -> black
    opaque = rgba[..., 3] == 255
    np.testing.assert_array_equal(out[opaque], rgba[opaque][:, :3])

    grey = Image.fromarray(fashion_mnist("test")[0][0])
    g = to_rgb_square(grey, 28)
    np.testing.assert_array_equal(g[..., 0], np.asarray(grey))
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()

    flag = Image.open(sorted((debs / "iso-flags-png-320x240").rglob("*.png"))[0])
    assert flag.size == (320, 240)
    f = to_rgb_square(flag, 32)
    assert f.shape == (32, 32, 3)
    # stretched, not cropped: the left and right edges of the flag both survive
    full = to_rgb_square(flag, 320).astype(int)
    small = np.asarray(Image.fromarray(full.astype(np.uint8)).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.abs(small.astype(int) - f.astype(int)).mean() < 8
    with pytest.raises(ValueError, match="positive integer"):
        to_rgb_square(flag, 0)


@pytest.mark.data
def test_font_codepoints_lists_what_the_font_maps(debs):
    from lfdn_edge.data.fonts import font_codepoints

    font = debs / "fonts-dejavu-core" / "usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    cps = font_codepoints(font)
    assert all(ord(c) in cps for c in "AZaz09") and len(cps) > 3000
    assert 0x4E00 not in cps  # DejaVu Sans has no CJK ideographs
    with pytest.raises(ValueError, match="not a readable TrueType"):
        font_codepoints(Path(__file__))
    with pytest.raises(FileNotFoundError):
        font_codepoints(font.with_name("missing.ttf"))


# ---------------------------------------------------------------- image folders


@pytest.fixture()
def real_folder(tmp_path, bench):
    root = tmp_path / "my images"
    (root / "sub").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(bench.ood["near"].images[i]).save(root / f"near_{i}.png")
    Image.fromarray(bench.ood["emoji"].images[0]).save(root / "sub" / "emoji.JPG", quality=95)
    Image.fromarray(fashion_mnist("test")[0][3]).save(root / "sub" / "grey.bmp")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.mark.data
def test_image_folder_reads_recursively(real_folder, bench):
    s = image_folder(real_folder, SIZE)
    assert s.name == "my images" and s.images.shape == (7, SIZE, SIZE, 3) and s.labels is None
    np.testing.assert_array_equal(s.images[0], bench.ood["near"].images[0])  # PNG is lossless
    small = image_folder(real_folder, 16, limit=3, seed=0, name="x")
    assert small.name == "x" and small.images.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(small.images, image_folder(real_folder, 16, limit=3, seed=0).images)


@pytest.mark.data
def test_image_folder_skips_unreadable(real_folder):
    (real_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (real_folder / "sub" / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 2 of 9 unreadable"):
        s = image_folder(real_folder, SIZE)
    assert len(s) == 7


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        image_folder(tmp_path / "nope", SIZE)
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images found in"):
        image_folder(tmp_path / "empty", SIZE)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="none of the 1 images"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image_folder(tmp_path / "bad", SIZE)


@pytest.mark.data
def test_load_benchmark_custom_sources(tmp_path, bench):
    id_dir, ood_dir = tmp_path / "id", tmp_path / "odd"
    id_dir.mkdir()
    ood_dir.mkdir()
    for i in range(20):
        Image.fromarray(bench.test.images[i]).save(id_dir / f"{i:02d}.png")
    for i in range(4):
        Image.fromarray(bench.ood["flags"].images[i]).save(ood_dir / f"{i}.png")
    with pytest.warns(UserWarning, match="70/10/20"):
        b = load_benchmark(str(id_dir), [str(ood_dir), "fmnist-ood:digits"], size=SIZE, n_train=100, n_cal=10,
                           n_test=10, n_ood=5)
    assert (len(b.train), len(b.cal), len(b.test)) == (14, 2, 4)
    assert b.name == "id" and list(b.ood) == ["odd", "fmnist-ood:digits"]
    assert b.far_ood == ("fmnist-ood:digits",)  # a user folder is not known to be far-OOD
    assert len(b.ood["odd"]) == 4 and len(b.ood["fmnist-ood:digits"]) == 5
    flat = lambda s: {x.tobytes() for x in s.images}  # noqa: E731
    assert not flat(b.train) & flat(b.cal) and not flat(b.train) & flat(b.test) and not flat(b.cal) & flat(b.test)
    b2 = load_benchmark(str(id_dir), [], size=SIZE, n_train=12, n_cal=2, n_test=3)
    assert (len(b2.train), len(b2.cal), len(b2.test)) == (12, 2, 3)
    b3 = load_benchmark(str(id_dir), [], size=SIZE, n_train=12, n_cal=2, n_test=6)
    np.testing.assert_array_equal(b2.train.images, b3.train.images)  # train does not depend on n_test
    assert not flat(b3.test) & flat(b2.train)


# ---------------------------------------------------------------- CIFAR layout + specs


def _write_cifar10(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """The torchvision layout: 5 train batches + test batch, Python-2 style pickles with bytes keys."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    chunks = np.array_split(np.arange(len(images)), 6)
    for name, idx in zip([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], chunks):
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels[idx]],
                 b"data": images[idx].transpose(0, 3, 1, 2).reshape(len(idx), -1),
                 b"filenames": [f"{i}.png".encode() for i in idx]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)


@pytest.mark.data
def test_cifar10_layout(tmp_path):
    x, y = fashion_mnist("test")
    rgb = np.repeat(np.pad(x[:24], ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=3)  # 32x32x3 real pixels
    _write_cifar10(tmp_path, rgb, y[:24])
    test = load_image_source(f"cifar10:{tmp_path}", SIZE)
    assert test.name == f"cifar10:{tmp_path}" and test.images.shape == (4, SIZE, SIZE, 3)
    np.testing.assert_array_equal(test.labels, y[20:24])
    np.testing.assert_array_equal(test.images[0], to_rgb_square(Image.fromarray(rgb[20]), SIZE))
    train = load_image_source(f"cifar10:{tmp_path}:train", 32, limit=7, seed=3)
    assert train.images.shape == (7, 32, 32, 3)
    full = load_image_source(f"cifar10:{tmp_path}:train", 32)
    np.testing.assert_array_equal(full.images, rgb[:20])
    np.testing.assert_array_equal(full.labels, y[:20])


def test_cifar_pickle_refuses_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (subprocess.call, (["true"],))
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_image_source(f"cifar10:{tmp_path}", SIZE)


def test_spec_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a known spec"):
        load_image_source(str(tmp_path / "nowhere"), SIZE)
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py/data_batch_1"):
        load_image_source(f"cifar10:{tmp_path}:train", SIZE)
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python/test"):
        load_image_source(f"cifar100:{tmp_path}", SIZE)
    with pytest.raises(FileNotFoundError, match=r"test_32x32\.mat"):
        load_image_source(f"svhn:{tmp_path}", SIZE)
    with pytest.raises(ValueError, match="names no ROOT"):
        load_image_source("cifar10:", SIZE)
    with pytest.raises(ValueError, match="unknown fmnist-ood set"):
        load_image_source("fmnist-ood:cifar", SIZE)
    with pytest.raises(ValueError, match="empty image source"):
        load_image_source("", SIZE)
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        load_image_source(str(f), SIZE)
    with pytest.raises(ValueError, match="unknown fmnist-ood set"):
        load_fmnist_ood(sets=["near", "svhn"])


def test_imageset_validation():
    with pytest.raises(ValueError, match="uint8"):
        ImageSet("x", np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, size, size, 3\)"):
        ImageSet("x", np.zeros((1, 4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="labels"):
        ImageSet("x", np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3))


# ---------------------------------------------------------------- Debian fetching


def test_fetch_errors_name_the_command(monkeypatch, tmp_path):
    calls = []

    def fake_run(cmd, cwd=None):
        calls.append(cmd)
        if cmd[1] == "update":
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package nosuchpkg")
    monkeypatch.setattr(debian, "_run", fake_run)
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    with pytest.raises(RuntimeError, match=r"sudo apt-get update"):
        fetch_debian_packages(["nosuchpkg"], root=tmp_path)
    assert calls == [["apt-get", "download", "nosuchpkg"]]  # no update attempted without root
    calls.clear()
    monkeypatch.setattr(debian.os, "geteuid", lambda: 0)
    with pytest.raises(RuntimeError, match="even after `apt-get update`"):
        fetch_debian_packages(["nosuchpkg"], root=tmp_path)
    assert [c[:2] for c in calls] == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]
    assert not (tmp_path / "debs" / "nosuchpkg").exists()


@pytest.mark.data
def test_fetch_extracts_once(monkeypatch, tmp_path):
    debs = fetch_debian_packages(["fonts-dejavu-core"], root=tmp_path)
    pkg = debs / "fonts-dejavu-core"
    assert debs == tmp_path / "debs" and (pkg / debian.MARKER).is_file()
    assert (pkg / "usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").is_file()
    assert [p.name for p in debs.iterdir()] == ["fonts-dejavu-core"]  # no temp folders or .deb left

    def no_run(*a, **k):
        raise AssertionError("already extracted: nothing should run")
    monkeypatch.setattr(debian, "_run", no_run)
    assert fetch_debian_packages(["fonts-dejavu-core"], root=tmp_path) == debs
