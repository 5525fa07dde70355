"""On-disk cache of extracted features, keyed by the image bytes, the backbone, its weights and the input size.

Training reads features from here and never reruns the backbone. Entries are .npy files written atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ._atomic import atomic_write
from .features import FeatureConfig, MultiLayerFeatures, extract_features

CACHE_FORMAT = 1  # bump when feature maths change, invalidating old entries


def default_cache_root() -> Path:
    root = os.environ.get("LFDN_EDGE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "lfdn-edge"


def _weights_identity(config: FeatureConfig) -> str:
    if config.backbone_weights is None:
        return "packaged"
    p = Path(config.backbone_weights)
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def feature_key(images: np.ndarray, config: FeatureConfig) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_FORMAT}|{config.backbone}|{config.input_size}|{_weights_identity(config)}|".encode())
    h.update(f"{images.dtype}|{images.shape}|".encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()[:32]


def cached_features(extractor: MultiLayerFeatures, images: np.ndarray, cache_root: str | os.PathLike | None = None,
                    desc: str = "features", progress: bool = True) -> np.ndarray:
    """Features of ``images``: loaded from the cache when present, else extracted and stored."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    path = root / "features" / f"{feature_key(images, extractor.config)}.npy"
    if path.is_file():
        try:
            feats = np.load(path)
            if feats.shape == (images.shape[0], extractor.layout.dim):
                return feats
        except (OSError, ValueError):
            pass  # a damaged entry is recomputed below
    feats = extract_features(extractor, images, progress=progress, desc=desc)
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, feats)

    atomic_write(path, write)
    return feats
