"""SVHN (cropped digits) from the on-disk layout torchvision downloads: ``ROOT/<split>_32x32.mat``."""

from __future__ import annotations

from pathlib import Path

import numpy as np



def load_svhn(root: str | Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Native 32x32 images ``(N, 32, 32, 3)`` uint8 and labels 0-9 (the file's label 10 means 0)."""
    if split not in ("train", "test", "extra"):
        raise ValueError(f"svhn split must be 'train', 'test' or 'extra', got {split!r}")
    path = Path(root).expanduser() / f"{split}_32x32.mat"
    if not path.is_file():
        raise FileNotFoundError(f"SVHN file not found: {path} (expected the torchvision layout; download "
                                f"it with torchvision.datasets.SVHN(root, split={split!r}, download=True))")
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise ImportError("reading SVHN .mat files needs scipy: `pip install scipy`") from exc
    mat = loadmat(str(path))
    x, y = mat["X"], mat["y"].reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ValueError(f"{path}: expected X of shape (32, 32, 3, N), got {x.shape}")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2), dtype=np.uint8), y
