"""What `lfdn-edge train` can tell about the training images, and which setting measured best for such data.

No single setting won on all three offline benchmarks (docs/QUALITY.md, "The default, decided on three data
sets"). On the grey ones (fmnist-ood, digits-ood: 28 px images) the defaults (EfficientNet-Lite2 at 64 px, MFsim
with uniform stage weights) stay; on the colour one (sprites-ood: 72 px sprites) EfficientNet-Lite0 at 128 px
with MFsim stage weights learned from the ID calibration split (``--stage-weights id-spread``) is 7.4 points of
near-OOD AUROC ahead of the defaults. Training can tell colour from grey images, so it says so before training;
it changes nothing by itself.
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


# the setting measured best on the colour benchmark (sprites-ood, 72 px sprites; docs/QUALITY.md, "The default,
# decided on three data sets"): near-OOD AUROC 85.43 over 2 training seeds x 3 noise seeds, the defaults 78.08
COLOUR_BEST = {"backbone": "efficientnet-lite0", "input_size": 128, "stage_weights": "id-spread"}


def setting_advice(images: np.ndarray, stage_weights, backbone: str | None = None,
                   input_size: int | None = None) -> str | None:
    """A one-line hint when the training images are of a kind on which another setting measured better than the
    one chosen (``stage_weights``: the --stage-weights choice, None or "convention" for the default; ``backbone``,
    ``input_size``: the feature settings, None for the defaults), else None."""
    from . import defaults

    chosen = {"backbone": backbone or defaults.BACKBONE, "input_size": int(input_size or defaults.INPUT_SIZE),
              "stage_weights": stage_weights or "convention"}
    share = colour_share(images)
    if share >= COLOUR_SHARE:
        missing = [k for k, v in COLOUR_BEST.items() if chosen[k] != v]
        if not missing:
            return None
        flags = " ".join(f"--{k.replace('_', '-')} {COLOUR_BEST[k]}" for k in COLOUR_BEST)
        return (f"note: {100 * share:.0f}% of the training images are colour; on colour data (sprites-ood) "
                f"`{flags}` measured the best near-OOD AUROC, 85.4 against 78.1 for the defaults (the backbone "
                "then takes 3-5x the default's time per image; docs/QUALITY.md): consider it")
    notes = []
    if chosen["stage_weights"] == "id-spread":
        notes.append("--stage-weights id-spread measured 1.2-1.7 points of near-OOD AUROC below the default weights")
    if chosen["input_size"] > defaults.INPUT_SIZE:
        notes.append(f"{chosen['input_size']} px measured below {defaults.INPUT_SIZE} px (128 px: 2.2 and 4.5 points "
                     "of near-OOD AUROC)")
    if notes:
        return (f"note: {100 * (1 - share):.0f}% of the training images are grey; on grey data (fmnist-ood, "
                f"digits-ood) " + "; ".join(notes) + " (docs/QUALITY.md)")
    return None
