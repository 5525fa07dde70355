"""Source specs: one string naming a set of images, for ID data or an OOD set.

- ``PATH`` (an existing folder): every image under it (:func:`image_folder`), named after the folder;
- ``cifar10:ROOT[:train|test]``, ``cifar100:ROOT[:train|test]``: torchvision's on-disk layout under ROOT;
- ``svhn:ROOT[:train|test|extra]``: ``ROOT/<split>_32x32.mat`` (needs scipy);
- ``fmnist-ood:SET``: one set of the offline benchmark (near, digits, letters, ...).

The split defaults to ``test``. Sets from a spec other than a folder are named by the spec itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .cifar import load_cifar
from .folder import image_folder
from .offline import BENCHMARK, OOD_SETS, ood_set
from .preprocess import to_rgb_square
from .sets import ImageSet
from .svhn import load_svhn

SPEC_HELP = ("a folder of images, cifar10:ROOT[:train|test], cifar100:ROOT[:train|test], "
             "svhn:ROOT[:train|test|extra] or fmnist-ood:SET with SET one of " + ", ".join(OOD_SETS))
_SPLITS = {"cifar10": ("train", "test"), "cifar100": ("train", "test"), "svhn": ("train", "test", "extra")}


def _from_arrays(name: str, images: np.ndarray, labels: np.ndarray, size: int) -> ImageSet:
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, img in enumerate(tqdm(images, desc=name, unit="img", leave=False, disable=len(images) < 2000)):
        out[i] = to_rgb_square(Image.fromarray(img, "RGB"), size)
    return ImageSet(name, out, labels)


def _root_and_split(kind: str, rest: str, spec: str) -> tuple[str, str]:
    root, sep, last = rest.rpartition(":")
    if sep and last in _SPLITS[kind]:
        rest = root
    else:
        last = "test"
    if not rest:
        raise ValueError(f"source spec {spec!r} names no ROOT folder; use {kind}:ROOT[:split]")
    return rest, last


def load_image_source(spec: str, size: int, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Load the images ``spec`` names (see the module docstring), at most ``limit`` of them (seeded)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"empty image source spec; give {SPEC_HELP}")
    path = Path(spec).expanduser()
    if path.is_dir():
        return image_folder(path, size, limit=limit, seed=seed)
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    if sep and kind in ("cifar10", "cifar100"):
        root, split = _root_and_split(kind, rest, spec)
        images, labels = load_cifar(kind, root, split, limit, seed)
        return _from_arrays(spec, images, labels, size)
    if sep and kind == "svhn":
        root, split = _root_and_split(kind, rest, spec)
        images, labels = load_svhn(root, split, limit, seed)
        return _from_arrays(spec, images, labels, size)
    if sep and kind == BENCHMARK:
        if rest not in OOD_SETS:
            raise ValueError(f"unknown {BENCHMARK} set {rest!r} in {spec!r}; choose from {', '.join(OOD_SETS)}")
        loaded = ood_set(rest, size, limit, seed)
        return ImageSet(spec, loaded.images, loaded.labels)
    if path.exists():
        raise ValueError(f"{spec!r} is a file, not a folder; give {SPEC_HELP}")
    raise FileNotFoundError(f"image source {spec!r} is neither an existing folder nor a known spec; give {SPEC_HELP}")
