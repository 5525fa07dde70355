"""Alerts: scores -> events, so that one incident gives one event (start, updates, end) with its peak score.

Per camera: an event starts when ``min_frames`` scores in a row are above ``on`` (default: the engine's
calibrated threshold) and no cooldown is running; it is updated when its peak rises; it ends when the scores
have stayed at or below ``off`` (hysteresis; default ``on``) for ``hold`` seconds; after it ends no new event
starts for ``cooldown`` seconds. Times are capture times, so a replay faster than real time gives the same
events. Frames that are not healthy are not fed here (lfdn_edge.stream.health).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class AlertConfig:
    on: Optional[float] = None      # None: the scorer's threshold
    off: Optional[float] = None     # None: = on
    hold: float = 1.0               # seconds at or below `off` before an event ends
    cooldown: float = 0.0           # seconds after an end without a new start
    min_frames: int = 1             # scores above `on` in a row to start

    def resolved(self, default_threshold: Optional[float]) -> AlertConfig:
        on = self.on if self.on is not None else default_threshold
        if on is None:
            raise ValueError("no alert threshold: the engine has no calibrated threshold; pass --threshold "
                             "(or a camera's threshold in --config)")
        off = self.off if self.off is not None else on
        if not (math.isfinite(on) and math.isfinite(off)) or off > on:
            raise ValueError(f"alert thresholds: need finite on >= off, got on={on}, off={off}")
        if self.hold < 0 or self.cooldown < 0 or self.min_frames < 1:
            raise ValueError("alerts: hold and cooldown must be >= 0 and min_frames >= 1")
        return AlertConfig(float(on), float(off), self.hold, self.cooldown, self.min_frames)


@dataclass
class Event:
    camera: str
    id: str
    kind: str               # "start", "update" or "end"
    start_time: float
    time: float             # capture time of the frame that caused this record
    frame: int
    score: float
    peak_score: float
    peak_frame: int
    peak_time: float
    frames: int             # frames of the incident so far (scored, above off or within the hold)
    end_time: Optional[float] = None
    reason: str = ""
    type: str = "event"     # the record type, as Result, Status and Summary have one
    clip: Optional[str] = None   # with clips on: the path the event's clip gets (a Clip record when written)
    clip_note: str = ""          # with clips on: why this event has no clip


class AlertTracker:
    """The alert state machine of one camera."""

    def __init__(self, camera: str, config: AlertConfig):
        if config.on is None or config.off is None:
            raise ValueError("AlertTracker needs a resolved AlertConfig (AlertConfig.resolved)")
        self.camera = camera
        self.c = config
        self.count = 0
        self.active: Optional[Event] = None
        self._above = 0
        self._below_since: Optional[float] = None
        self._cool_until = -math.inf
        self._last_time = -math.inf
        self._last_frame = -1

    def update(self, t: float, frame: int, score: float) -> list[Event]:
        c = self.c
        out: list[Event] = []
        self._last_time, self._last_frame = t, frame
        ev = self.active
        if ev is None:
            self._above = self._above + 1 if score > c.on else 0   # type: ignore[operator]
            if self._above >= c.min_frames and t >= self._cool_until:
                self.count += 1
                ev = Event(self.camera, f"{self.camera}-{self.count}", "start", t, t, frame, score, score, frame,
                           t, 1)
                self.active = ev
                self._below_since = None
                out.append(_copy(ev))
            return out
        ev.frames += 1
        ev.time, ev.frame, ev.score = t, frame, score
        if score > c.off:   # type: ignore[operator]
            self._below_since = None
            if score > ev.peak_score:
                ev.peak_score, ev.peak_frame, ev.peak_time = score, frame, t
                ev.kind = "update"
                out.append(_copy(ev))
            return out
        if self._below_since is None:
            self._below_since = t
        if t - self._below_since >= c.hold:
            out.append(self._end(t, "score below the off threshold"))
        return out

    def _end(self, t: float, reason: str) -> Event:
        ev = self.active
        assert ev is not None
        ev.kind, ev.end_time, ev.reason = "end", t, reason
        self.active = None
        self._above = 0
        self._cool_until = t + self.c.cooldown
        return _copy(ev)

    def close(self, reason: str = "stream end") -> list[Event]:
        """End an open event (at the end of the stream)."""
        if self.active is None:
            return []
        return [self._end(self._last_time, reason)]


def _copy(ev: Event) -> Event:
    return Event(**ev.__dict__)
