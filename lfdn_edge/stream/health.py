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
    frozen_diff: float = 0.5     # mean absolute grey difference to the previous frame below this = unchanged
    frozen_frames: int = 3       # this many unchanged frames in a row (the first included) = frozen
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
        if self._same >= c.frozen_frames:
            return FROZEN
        return OK
