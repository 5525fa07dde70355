"""CIFAR-10 / CIFAR-100 from the on-disk layout torchvision downloads (python pickle batches)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


# Layout under ROOT, per dataset: folder, {split: batch files}, label key.
LAYOUTS = {
    "cifar10": ("cifar-10-batches-py",
                {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}, b"labels"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, b"fine_labels"),
}
# The only globals a CIFAR batch pickle may name: numpy array reconstruction (numpy 1.x and 2.x) and the
# byte-string codec that protocol-2 pickles use. Anything else is refused instead of executed.
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    """Unpickle one CIFAR batch file (keys are bytes, as written by Python 2)."""
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR batch file not found: {path} (expected the torchvision layout; "
                                f"download it with torchvision.datasets.CIFAR10/100(root, download=True))")
    with open(path, "rb") as fh:
        batch = _BatchUnpickler(fh, encoding="bytes").load()
    if not isinstance(batch, dict) or b"data" not in batch:
        raise ValueError(f"{path}: not a CIFAR batch (no b'data' entry)")
    return batch


def load_cifar(kind: str, root: str | Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Native 32x32 images ``(N, 32, 32, 3)`` uint8 and labels of ``kind`` ("cifar10"/"cifar100")."""
    if kind not in LAYOUTS:
        raise ValueError(f"unknown CIFAR kind {kind!r}; use cifar10 or cifar100")
    folder, splits, label_key = LAYOUTS[kind]
    if split not in splits:
        raise ValueError(f"{kind} split must be 'train' or 'test', got {split!r}")
    datas, labels = [], []
    for fname in splits[split]:
        batch = read_batch(Path(root).expanduser() / folder / fname)
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or label_key not in batch:
            raise ValueError(f"{Path(root) / folder / fname}: expected data of shape (N, 3072) and "
                             f"{label_key!r}, got {data.shape}")
        datas.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(datas), np.concatenate(labels)
