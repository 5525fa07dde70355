"""What flows through a stream: a decoded frame as a source gives it (:class:`RawFrame`) and as a reader hands
it on (:class:`Frame`, with its camera and its times)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

# where a frame's capture time comes from
CLOCK_SOURCE = "source"     # the source said when it captured the frame (test:// sources)
CLOCK_PTS = "pts"           # presentation timestamps, anchored at the receive time of the first frame
CLOCK_RECEIVE = "receive"   # no timestamp from the source: the time the frame was received


class SourceError(OSError):
    """A source failed (could not open, connection lost, read timeout): the reader reconnects."""


class SourceTimeout(SourceError):
    """No frame within the read timeout (a stalled source)."""


@dataclass
class RawFrame:
    """A frame as a source decodes it: RGB uint8 (H, W, 3), or None when the data could not be decoded."""

    index: int                              # frame number in the source (gaps = frames the source lost)
    image: Optional[np.ndarray]
    pts: Optional[float] = None             # presentation time in seconds (stream time), if any
    capture_time: Optional[float] = None    # wall time of capture given by the source itself, if any
    error: str = ""                         # why image is None


@dataclass
class Frame:
    """A frame handed on by a reader: the camera, the image and its times (time.time() seconds)."""

    camera: str
    index: int
    image: Optional[np.ndarray]
    capture_time: float
    capture_clock: str          # CLOCK_SOURCE, CLOCK_PTS or CLOCK_RECEIVE
    receive_time: float
    pts: Optional[float] = None
    error: str = ""
    model_input: Optional[np.ndarray] = None   # the image resized for the scorer by the reader thread, if it was
