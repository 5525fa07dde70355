"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (raw 28x28 grey, with labels)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .debian import fetch_debian_packages
from .idx import read_idx

PACKAGE = "dataset-fashion-mnist"
SUBDIR = Path("usr/share/datasets/fashion-mnist")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def load_split(split: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` uint8 of ``split`` ("train"/"test") in ``folder``."""
    if split not in _FILES:
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    img_name, lbl_name = _FILES[split]
    images = read_idx(folder / img_name, expect_ndim=3)
    labels = read_idx(folder / lbl_name, expect_ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8 or len(images) != len(labels):
        raise ValueError(f"{folder}: {split} images {images.shape} {images.dtype} do not match labels "
                         f"{labels.shape} {labels.dtype}")
    return images, labels


@functools.lru_cache(maxsize=4)
def _load_readonly(split: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_split(split, folder)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fetch the package if needed and return ``split`` as ``(images, labels)``.

    Parsed arrays are memoised per process and shared between calls, so they are read-only.
    """
    if split not in _FILES:
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    debs = fetch_debian_packages([PACKAGE])
    return _load_readonly(split, debs / PACKAGE / SUBDIR)
