"""Camera health, kept apart from the OOD score: black, frozen and undecodable frames are a camera status,
not anomalies. A frame that is not "ok" is not scored (its result has score None) and does not touch the
alert state, so a covered lens or a hung encoder never raises an OOD event. Stalled sources (no frame for a
while) are reported by the stream as a status record, since they have no frames to carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

OK, BLACK, FROZEN, UNDECODABLE, STALLED = "ok", "black", "frozen", "undecodable", "stalled"


@dataclass(frozen=True)
class HealthConfig:
    black_mean: float = 16.0     # grey level (0..255): a frame darker than this on average ...
    black_std: float = 6.0       # ... and this flat is black
    # mean absolute grey difference to the previous frame below this = unchanged. Measured on the test:// scene
    # through libx264 (CRF 23) at 96x72 to 640x480: consecutive frames of the moving scene differ by 0.50 at
    # the least, a repeated frame by 0.08 at most (0 at 640x480), so 0.1 (it was 0.5: 5 % of such normal frames
    # were taken for frozen). A scene with no motion and no noise left after the encoder can still read as
    # frozen: HealthConfig(frozen_frames=0) turns the check off.
    frozen_diff: float = 0.1
    # this many unchanged frames in a row (the first included) = frozen; 0 = off. 8 (about 0.5 s at 15 fps; it
    # was 3): libx264 output of the moving scene at 64x48 had runs of 3 bit-identical frames (4 in 1,500).
    frozen_frames: int = 8
    stall_s: float = 2.0         # no frame for this long = stalled (status record)
    step: int = 4                # pixels sampled every `step` rows and columns


class HealthMonitor:
    """The health of one camera, frame by frame."""

    def __init__(self, config: HealthConfig = HealthConfig()):
        self.config = config
        self._prev: Optional[np.ndarray] = None
        self._same = 1

    def check(self, image: Optional[np.ndarray]) -> str:
        c = self.config
        if image is None:
            return UNDECODABLE
        g = image[::c.step, ::c.step].astype(np.float32).mean(axis=2)
        prev, self._prev = self._prev, g
        if prev is not None and prev.shape == g.shape and float(np.abs(g - prev).mean()) < c.frozen_diff:
            self._same += 1
        else:
            self._same = 1
        if float(g.mean()) < c.black_mean and float(g.std()) < c.black_std:
            return BLACK
        if c.frozen_frames > 0 and self._same >= c.frozen_frames:
            return FROZEN
        return OK
