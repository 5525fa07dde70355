"""What `lfdn-edge train` can tell about the training images, and which setting measured best for such data.

No single setting won on all three offline benchmarks (docs/QUALITY.md, "The default, decided on three data
sets"): on the grey benchmarks (fmnist-ood, digits-ood) the defaults are best or within the spread of the best
servable setting, on the colour one (sprites-ood) MFsim with stage weights learned from the ID calibration split
(``--stage-weights id-spread``) is 3.2 points of near-OOD AUROC ahead of the default. Training can tell colour
from grey images, so it says so; it changes nothing by itself.
"""

from __future__ import annotations

import numpy as np

# A pixel counts as lit when its brightest channel exceeds LIT (composited sprites have black backgrounds); an
# image is colour when the mean chroma (max - min channel) of its lit pixels is at least CHROMA; the data is
# colour when at least COLOUR_SHARE of the images are. Measured (docs/SPRITES_OOD_BENCHMARK.md): sprite units
# mean chroma 45, 99.6 % of images >= 10; grey data (fmnist-ood, digits-ood) exactly 0.
LIT = 32
CHROMA = 10.0
COLOUR_SHARE = 0.5
SAMPLE = 512  # images looked at, at most (evenly spaced)


def colour_share(images: np.ndarray) -> float:
    """The share of ``images`` (uint8 (N, H, W, 3)) that are colour (mean chroma of lit pixels >= CHROMA), over
    at most SAMPLE evenly spaced images."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"expected (N, H, W, 3) images, got shape {images.shape}")
    idx = np.linspace(0, len(images) - 1, min(SAMPLE, len(images))).astype(int)
    im = images[idx].astype(np.int16)
    hi, lo = im.max(-1), im.min(-1)
    lit = hi > LIT
    chroma = np.where(lit, hi - lo, 0).sum(axis=(1, 2)) / np.maximum(lit.sum(axis=(1, 2)), 1)
    return float(np.mean(chroma >= CHROMA))


def setting_advice(images: np.ndarray, stage_weights) -> str | None:
    """A one-line hint when the training images are of a kind on which another setting measured better than the
    one chosen (``stage_weights``: the --stage-weights choice, "convention" or None for the default), else None."""
    share = colour_share(images)
    if share >= COLOUR_SHARE and stage_weights in (None, "convention"):
        return (f"note: {100 * share:.0f}% of the training images are colour; on colour data (sprites-ood) MFsim "
                "with stage weights learned from the ID calibration split measured 3.2 points of near-OOD AUROC "
                "better than the default (81.3 vs 78.1, docs/QUALITY.md): consider --stage-weights id-spread")
    if share < COLOUR_SHARE and stage_weights == "id-spread":
        return (f"note: {100 * (1 - share):.0f}% of the training images are grey; on grey data (fmnist-ood, "
                "digits-ood) --stage-weights id-spread measured 1.3-1.8 points of near-OOD AUROC below the "
                "default stage weights (docs/QUALITY.md)")
    return None
