"""Where downloaded packages and built image sets live, and how image sets are stored there."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from .containers import ImageSet
from ..errors import UnavailableError

CACHE_ENV = "LFDN_EDGE_CACHE"


def cache_dir() -> Path:
    """The cache root: ``$LFDN_EDGE_CACHE`` if set, else ``~/.cache/lfdn-edge``; created on demand."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "lfdn-edge"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnavailableError(f"cannot create the cache folder {root} ({exc}); set {CACHE_ENV} to a "
                           f"writable folder") from exc
    return root


def save_image_set(path: Path, images: ImageSet) -> Path:
    """Write ``images`` to ``path`` as a compressed .npz, atomically (temp file, then ``os.replace``)."""
    arrays = {"name": np.array(images.name), "images": images.images}
    if images.labels is not None:
        arrays["labels"] = images.labels
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object, so numpy does not append ".npz" to the temp name
            np.savez_compressed(fh, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # temp files are created 0600; give the usual permissions
    return path


def load_image_set(path: Path) -> ImageSet:
    """Read an :class:`ImageSet` written by :func:`save_image_set`."""
    with np.load(path, allow_pickle=False) as z:
        labels = z["labels"] if "labels" in z.files else None
        return ImageSet(str(z["name"]), z["images"], labels)
