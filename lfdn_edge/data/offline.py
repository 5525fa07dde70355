"""The offline benchmarks by name: ``fmnist-ood`` (the default), ``digits-ood`` (the second one, issue 16) and
``sprites-ood`` (colour images, issue 27).

Each entry is a module with ``BENCHMARK``, ``OOD_SETS``, ``FAR_OOD``, ``DEFAULT_SPLIT`` (its own train / cal /
test counts, used for every count left as None) and ``ood_source(name, size)``, and its loader
``load(size, n_train, n_cal, n_test, n_ood, seed, sets, progress)``; what they share is
:mod:`lfdn_edge.data.offline_common`; ``--data NAME`` and the source spec
``NAME:SET`` work the same way for every one.
"""

from __future__ import annotations

from . import digits_ood, fmnist_ood, sprites_ood

BENCHMARKS = {fmnist_ood.BENCHMARK: (fmnist_ood, fmnist_ood.load_fmnist_ood),
              digits_ood.BENCHMARK: (digits_ood, digits_ood.load_digits_ood),
              sprites_ood.BENCHMARK: (sprites_ood, sprites_ood.load_sprites_ood)}


def describe() -> str:
    """``'fmnist-ood:SET with SET one of near, digits, ...; digits-ood:SET with SET one of ...'`` for help texts."""
    return "; ".join(f"{name}:SET with SET one of {', '.join(mod.OOD_SETS)}" for name, (mod, _) in BENCHMARKS.items())
