"""Source specs: one string naming a set of images, for ID data or an OOD set.

- ``PATH`` (an existing folder): every image under it (:func:`image_folder`), named after the folder;
- ``cifar10:ROOT[:train|test]``, ``cifar100:ROOT[:train|test]``: torchvision's on-disk layout under ROOT;
- ``svhn:ROOT[:train|test|extra]``: ``ROOT/<split>_32x32.mat`` (needs scipy);
- ``fmnist-ood:SET``: one set of the offline benchmark (near, digits, letters, ...);
- ``digits-ood:SET``: one set of the second offline benchmark (near, fashion, letters, ...);
- ``sprites-ood:SET``: one set of the colour offline benchmark (near, portraits, terrain, ...).

The split defaults to ``test``. Sets from a spec other than a folder are named by the spec itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from ..progress import bar, progress_enabled

from .cifar import load_cifar
from .folder import folder_files, load_files
from .offline import BENCHMARKS, describe
from .preprocess import to_rgb_square
from .containers import ImageSet
from .subsample import choose
from .svhn import load_svhn

SPEC_HELP = ("a folder of images, cifar10:ROOT[:train|test], cifar100:ROOT[:train|test], "
             "svhn:ROOT[:train|test|extra], " + describe())
_SPLITS = {"cifar10": ("train", "test"), "cifar100": ("train", "test"), "svhn": ("train", "test", "extra")}


@dataclass
class Source:
    """An opened source: ``count`` items, of which ``load(indices)`` decodes and resizes only those.

    ``key`` names its random stream for seeded subsampling (see ``subsample``).
    """

    name: str
    count: int
    load: Callable[[np.ndarray], ImageSet]
    key: str


def _array_loader(name: str, images: np.ndarray, labels: np.ndarray, size: int):
    def load(idx: np.ndarray) -> ImageSet:
        out = np.empty((len(idx), size, size, 3), np.uint8)
        for i, j in enumerate(bar(idx, name, min_items=2000)):
            out[i] = to_rgb_square(Image.fromarray(images[j], "RGB"), size)
        return ImageSet(name, out, labels[idx])
    return load


def _root_and_split(kind: str, rest: str, spec: str) -> tuple[str, str]:
    root, sep, last = rest.rpartition(":")
    if sep and last in _SPLITS[kind]:
        rest = root
    else:
        last = "test"
    if not rest:
        raise ValueError(f"source spec {spec!r} names no ROOT folder; use {kind}:ROOT[:split]")
    return rest, last


def open_source(spec: str, size: int) -> Source:
    """Resolve ``spec`` (see the module docstring) without decoding its images yet."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"empty image source spec; give {SPEC_HELP}")
    path = Path(spec).expanduser()
    if path.is_dir():
        name, files = folder_files(path)
        return Source(name, len(files), lambda idx: load_files([files[i] for i in idx], size, name, path),
                      f"folder/{name}")
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    if sep and kind in ("cifar10", "cifar100", "svhn"):
        root, split = _root_and_split(kind, rest, spec)
        images, labels = load_svhn(root, split) if kind == "svhn" else load_cifar(kind, root, split)
        return Source(spec, len(images), _array_loader(spec, images, labels, size), f"{kind}/{split}")
    if sep and kind in BENCHMARKS:
        module = BENCHMARKS[kind][0]
        if rest not in module.OOD_SETS:
            raise ValueError(f"unknown {kind} set {rest!r} in {spec!r}; choose from {', '.join(module.OOD_SETS)}")
        count, load = module.ood_source(rest, size)

        def renamed(idx: np.ndarray) -> ImageSet:
            got = load(idx)
            return ImageSet(spec, got.images, got.labels)
        return Source(spec, count, renamed, f"{kind}/{rest}")
    if path.exists():
        raise ValueError(f"{spec!r} is a file, not a folder; give {SPEC_HELP}")
    raise FileNotFoundError(f"image source {spec!r} is neither an existing folder nor a known spec; "
                            f"give {SPEC_HELP}")


def load_image_source(spec: str, size: int, limit: int | None = None, seed: int = 0,
                      progress: bool = True) -> ImageSet:
    """Load the images ``spec`` names, at most ``limit`` of them (a seeded subset kept in source order).

    The subset for ``fmnist-ood:SET`` (``digits-ood:SET``, ``sprites-ood:SET``) is the one :func:`load_fmnist_ood`
    (:func:`load_digits_ood`, :func:`load_sprites_ood`) uses for the same ``limit``/``seed``.
    """
    with progress_enabled(progress):
        src = open_source(spec, size)
        return src.load(choose(src.count, limit, seed, src.key))
