"""Image data for lfdn-edge: user folders, torchvision CIFAR/SVHN layouts, and the offline benchmark.

Every image, whatever its source, goes through :func:`to_rgb_square` (RGB, alpha over black, stretched
to ``size`` x ``size``) and lands in an :class:`ImageSet` of ``uint8`` arrays ``(N, size, size, 3)``.
The offline benchmarks ``fmnist-ood``, ``digits-ood`` and ``sprites-ood`` are built from Debian packages fetched with ``apt-get download`` into
:func:`cache_dir` (``$LFDN_EDGE_CACHE`` or ``~/.cache/lfdn-edge``).
"""

from .assemble import load_benchmark, resolve_split
from .cache import cache_dir
from .debian import fetch_debian_packages
from .folder import image_folder
from .digits_ood import load_digits_ood
from .fmnist_ood import FAR_OOD, OOD_SETS, load_fmnist_ood
from .offline import BENCHMARKS
from .sprites_ood import load_sprites_ood
from .preprocess import to_rgb_square
from .containers import Benchmark, ImageSet
from .specs import load_image_source

__all__ = ["BENCHMARKS", "Benchmark", "ImageSet", "FAR_OOD", "OOD_SETS", "cache_dir", "fetch_debian_packages",
           "image_folder", "load_digits_ood", "load_fmnist_ood", "load_sprites_ood", "load_benchmark", "load_image_source", "resolve_split",
           "to_rgb_square"]
