"""Progress bars of the data loaders, and the flag that switches them off (a leaf module).

The public loaders (:func:`lfdn_edge.data.load_benchmark`, ``load_fmnist_ood``, ``load_image_source``,
``image_folder``, ``fetch_debian_packages``) take ``progress: bool``; they run their inner builders inside
:func:`progress_enabled`, and every bar of the builders is made by :func:`bar`, which reads that setting.
A context variable rather than a parameter through every builder: the setting follows the call (threads
and nested loaders included) and nothing patches tqdm.
"""

from __future__ import annotations

import contextlib
import contextvars

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("lfdn_edge_progress", default=True)


@contextlib.contextmanager
def progress_enabled(enabled: bool):
    """Within the block, :func:`bar` shows bars only if ``enabled`` (and the enclosing setting allows it)."""
    token = _ENABLED.set(bool(enabled) and _ENABLED.get())
    try:
        yield
    finally:
        _ENABLED.reset(token)


def bar(iterable, desc: str, unit: str = "img", *, min_items: int = 0, leave: bool = False, total=None):
    """A tqdm bar over ``iterable``, off when progress is disabled or there are fewer than ``min_items``."""
    from tqdm import tqdm

    n = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    off = not _ENABLED.get() or (n is not None and n < min_items)
    return tqdm(iterable, desc=desc, unit=unit, leave=leave, total=total, disable=off)


def write(message: str) -> None:
    """A message that does not break an active bar (tqdm.write)."""
    from tqdm import tqdm

    tqdm.write(message)
