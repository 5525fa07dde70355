"""The records a stream yields, and their versioned JSON form (one object per line).

Every record has ``"schema": "lfdn-edge.stream/1"`` and a ``"type"``: ``result`` (one per frame), ``event``
(alert start / update / end), ``status`` (a camera connected, stalled, reconnecting, ended, dead, recovered;
scorer_unavailable / scorer_back to every camera while a remote scorer is unreachable) and
``summary`` (once, at the end: per-camera counts); with clips on, ``clip`` (an event's clip was written, or
failed). Times are time.time() seconds (UTC epoch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .alerts import Event

SCHEMA = "lfdn-edge.stream/1"


def _num(x: Optional[float], nd: int = 6) -> Optional[float]:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


@dataclass
class Result:
    camera: str
    frame: int
    capture_time: float
    capture_clock: str          # "source", "pts" or "receive"
    receive_time: float
    score_time: float
    latency_s: float            # score_time - capture_time (- receive_time when capture is later: a fast replay)
    health: str                 # "ok", "black", "frozen", "undecodable"
    score: Optional[float]      # None when the frame was not scored (health not ok, or the scorer unavailable)
    threshold: Optional[float]
    is_ood: Optional[bool]
    dropped: int                # frames of this camera dropped so far (late + fps)
    pts: Optional[float] = None
    type: str = "result"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "type": "result", "camera": self.camera, "frame": self.frame,
                "capture_time": _num(self.capture_time), "capture_clock": self.capture_clock,
                "receive_time": _num(self.receive_time), "score_time": _num(self.score_time),
                "latency_s": _num(self.latency_s), "pts": _num(self.pts), "health": self.health,
                "score": _num(self.score, 7), "threshold": _num(self.threshold, 7), "is_ood": self.is_ood,
                "dropped": self.dropped}


def event_dict(ev: Event) -> dict[str, Any]:
    return {"schema": SCHEMA, "type": "event", "event": ev.kind, "camera": ev.camera, "id": ev.id,
            "start_time": _num(ev.start_time), "time": _num(ev.time), "end_time": _num(ev.end_time),
            "frame": ev.frame, "score": _num(ev.score, 7), "peak_score": _num(ev.peak_score, 7),
            "peak_frame": ev.peak_frame, "peak_time": _num(ev.peak_time), "frames": ev.frames,
            "reason": ev.reason or None, **({"clip": ev.clip, "clip_note": ev.clip_note or None}
                                             if ev.clip is not None or ev.clip_note else {})}


@dataclass
class Status:
    camera: str
    status: str     # connected, stalled, recovered, reconnecting, ended, dead, scorer_unavailable, scorer_back
    time: float
    detail: str = ""
    type: str = "status"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "type": "status", "camera": self.camera, "status": self.status,
                "time": _num(self.time), "detail": self.detail or None}


@dataclass
class Clip:
    """An event's clip, written (path set) or failed (error set): stream copy of the source's packets from a
    keyframe (lfdn_edge.stream.clips). first/last_time: capture times of its first and last frame (presentation
    order), the clock of the results; duration_s = last_time - first_time; reason: why it ends where it does
    (complete, max length, source ended, reconnect, stream end, stream stopped)."""

    camera: str
    event_id: str
    path: Optional[str]
    first_time: Optional[float]
    last_time: Optional[float]
    frames: int
    duration_s: float
    codec: str
    container: str
    bytes: int
    reason: str
    error: str = ""
    type: str = "clip"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "type": "clip", "camera": self.camera, "id": self.event_id, "path": self.path,
                "first_time": _num(self.first_time), "last_time": _num(self.last_time), "frames": self.frames,
                "duration_s": _num(self.duration_s), "codec": self.codec, "container": self.container,
                "bytes": self.bytes, "reason": self.reason or None, "error": self.error or None}


@dataclass
class Summary:
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    type: str = "summary"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "type": "summary", "duration_s": _num(self.duration_s), "cameras": self.cameras}


def to_dict(record: Any) -> dict[str, Any]:
    if isinstance(record, Event):
        return event_dict(record)
    return record.to_dict()
