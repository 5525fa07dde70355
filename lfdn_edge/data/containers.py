"""The two containers every data source returns: :class:`ImageSet` and :class:`Benchmark`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageSet:
    """A named stack of square RGB images.

    ``images`` is ``uint8`` with shape ``(N, size, size, 3)``; ``labels`` is ``None`` or an integer array
    of length ``N`` (class ids where the source has them; OOD detection itself never needs them).
    """

    name: str
    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        imgs = self.images
        if not isinstance(imgs, np.ndarray) or imgs.dtype != np.uint8:
            raise ValueError(f"ImageSet {self.name!r}: images must be a uint8 numpy array, "
                             f"got {type(imgs).__name__} {getattr(imgs, 'dtype', '')}")
        if imgs.ndim != 4 or imgs.shape[3] != 3 or imgs.shape[1] != imgs.shape[2]:
            raise ValueError(f"ImageSet {self.name!r}: images must have shape (N, size, size, 3), "
                             f"got {imgs.shape}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.shape != (imgs.shape[0],):
                raise ValueError(f"ImageSet {self.name!r}: labels must have shape ({imgs.shape[0]},), "
                                 f"got {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        """Side length in pixels of the (square) images."""
        return int(self.images.shape[1])

    def subset(self, indices: np.ndarray, name: str | None = None) -> "ImageSet":
        """A new set holding ``images[indices]`` (and the matching labels)."""
        idx = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else self.labels[idx]
        return ImageSet(name or self.name, self.images[idx], labels)


@dataclass
class Benchmark:
    """ID train / calibration / test sets plus named OOD evaluation sets.

    ``cal`` is held out from ``train`` (used to calibrate a score threshold). ``ood`` keeps its insertion
    order. ``far_ood`` names the OOD sets that enter the far-OOD mean; near-OOD sets are left out of it.
    """

    name: str
    train: ImageSet
    cal: ImageSet
    test: ImageSet
    ood: dict[str, ImageSet]
    far_ood: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [n for n in self.far_ood if n not in self.ood]
        if unknown:
            raise ValueError(f"Benchmark {self.name!r}: far_ood names {unknown} are not OOD sets "
                             f"(have {list(self.ood)})")
