"""What a running stream shows over HTTP (lfdn_edge.stream.web): a :class:`StreamMonitor` sees every record the
stream yields (and the newest frame of each camera) and keeps the state behind ``/metrics`` (the Prometheus
text exposition format, version 0.0.4, written here: no dependency) and ``/api/state`` (JSON for the preview
page).

Metrics, every one with a ``camera`` label (docs/STREAMS.md "HTTP preview and metrics"):

* ``lfdn_stream_frames_total{camera,health}`` (counter): frames handed to the scorer, by health (ok = scored);
* ``lfdn_stream_frames_scored_total``, ``lfdn_stream_ood_frames_total`` (counters);
* ``lfdn_stream_fps`` (gauge): scored frames per second over the last ``fps_window`` seconds;
* ``lfdn_stream_frames_dropped_total{camera,reason}`` (counter): late (a live camera's frame replaced by a newer
  one before it was scored) and fps (above the target fps), as the reader counts them;
* ``lfdn_stream_latency_seconds`` (histogram): capture to result (the records' ``latency_s``), every frame;
* ``lfdn_stream_reconnects_total``, ``lfdn_stream_events_total`` (event starts) (counters);
* ``lfdn_stream_event_active``, ``lfdn_stream_score`` (last score), ``lfdn_stream_threshold`` (alert
  on-threshold) (gauges);
* ``lfdn_stream_camera_status{camera,status}`` (gauge, a state set: 1 for the camera's current status from its
  status records, 0 for the others) and ``lfdn_stream_camera_info{camera,uri}`` (gauge, 1; the URI redacted).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Any, Callable, Iterable, Optional

from .alerts import Event
from .records import Result, Status, Summary, event_dict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HEALTH_STATES = ("ok", "black", "frozen", "undecodable")
CAMERA_STATES = ("starting", "connected", "stalled", "reconnecting", "ended", "dead", "stopped",
                 "scorer_unavailable")
DROP_REASONS = ("late", "fps")


def escape_label(value: str) -> str:
    """A label value as the exposition format quotes it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def format_value(x: float) -> str:
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


class Family:
    """One metric family: its name, help, type and samples (suffix, labels, value)."""

    def __init__(self, name: str, kind: str, help: str):   # noqa: A002 (the format's word)
        self.name, self.kind, self.help = name, kind, help
        self.samples: list[tuple[str, dict[str, str], float]] = []

    def add(self, labels: dict[str, str], value: float, suffix: str = "") -> Family:
        self.samples.append((suffix, labels, value))
        return self

    def render(self) -> str:
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        out = [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {self.kind}"]
        for suffix, labels, value in self.samples:
            lab = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            out.append(f"{self.name}{suffix}{{{lab}}} {format_value(value)}" if lab else
                       f"{self.name}{suffix} {format_value(value)}")
        return "\n".join(out) + "\n"


def render(families: Iterable[Family]) -> str:
    return "".join(f.render() for f in families)


class RateWindow:
    """Events per second over the last ``window`` seconds, in buckets of ``resolution`` seconds: memory is
    bounded by window / resolution whatever the rate (a replay scores thousands of frames a second), and old
    buckets go at every add, not only when someone reads the rate."""

    def __init__(self, window: float, resolution: float = 0.25):
        self.window, self.resolution = float(window), float(resolution)
        self.buckets: collections.deque = collections.deque()    # [slot, count, first time, last time]

    def add(self, t: float) -> None:
        slot = int(t // self.resolution)
        if self.buckets and self.buckets[-1][0] == slot:
            b = self.buckets[-1]
            b[1] += 1
            b[3] = t
        else:
            self.buckets.append([slot, 1, t, t])
        self._trim(t)

    def _trim(self, now: float) -> None:
        while self.buckets and now - self.buckets[0][3] > self.window:
            self.buckets.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        n = sum(b[1] for b in self.buckets)
        if n < 2:
            return 0.0
        first, last = self.buckets[0][2], self.buckets[-1][3]
        span = max(now - first, last - first)
        return (n - 1) / span if span > 0 else 0.0


class _Camera:
    def __init__(self, name: str, uri: str, threshold: Optional[float], history: int, fps_window: float):
        self.name, self.uri, self.threshold = name, uri, threshold
        self.status = "starting"        # from the reader's status records
        self.scorer_down = False         # between scorer_unavailable and scorer_back (the state set shows it)
        self.health = {h: 0 for h in HEALTH_STATES}
        self.scored = 0
        self.ood = 0
        self.events = 0
        self.event_active = False
        self.last_score: Optional[float] = None
        self.last: Optional[dict[str, Any]] = None
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_count = 0
        self.latency_sum = 0.0
        self.scored_at = RateWindow(fps_window)      # monotonic times of scored results, in bounded buckets
        self.points: collections.deque = collections.deque(maxlen=history)
        self.image: Any = None             # the newest frame (uint8 RGB), its number and the JPEG cache
        self.image_frame = -1
        self.image_seq = 0
        self.jpeg: Optional[bytes] = None
        self.jpeg_seq = -1

    def shown_status(self) -> str:
        """scorer_unavailable while the scorer is down and the camera itself is connected, else its status."""
        return "scorer_unavailable" if self.scorer_down and self.status == "connected" else self.status


class StreamMonitor:
    """Thread-safe state of a running stream, fed by :meth:`observe` (every record, in the iterating thread) and
    :meth:`frame` (the newest image of a camera), read by the HTTP server's threads.

    ``cameras``: name -> (redacted URI, alert on-threshold); ``reader_stats``: a callable returning name ->
    ReaderStats-like objects (``dropped`` by reason, ``reconnects``), read at each scrape."""

    def __init__(self, cameras: dict[str, tuple[str, Optional[float]]],
                 reader_stats: Optional[Callable[[], dict[str, Any]]] = None, history: int = 300,
                 max_events: int = 50, fps_window: float = 5.0, jpeg_quality: int = 80):
        self.lock = threading.Condition()
        self.cams = {n: _Camera(n, uri, thr, history, fps_window) for n, (uri, thr) in cameras.items()}
        self.reader_stats = reader_stats
        self.events: collections.deque = collections.deque(maxlen=max_events)
        self.fps_window = fps_window
        self.jpeg_quality = jpeg_quality
        self.t0 = time.time()
        self.ended = False

    # ----------------------------------------------------------------------------------------- feeding
    def observe(self, record: Any) -> None:
        with self.lock:
            if isinstance(record, Result):
                self._result(record)
            elif isinstance(record, Event):
                c = self.cams.get(record.camera)
                self.events.appendleft(event_dict(record))
                if c is not None:
                    if record.kind == "start":
                        c.events += 1
                    c.event_active = record.kind != "end"
            elif isinstance(record, Status):
                c = self.cams.get(record.camera)
                if c is not None:
                    if record.status in ("scorer_unavailable", "scorer_back"):
                        c.scorer_down = record.status == "scorer_unavailable"
                    else:
                        c.status = "connected" if record.status == "recovered" else record.status
            elif isinstance(record, Summary):
                self.ended = True
            self.lock.notify_all()

    def _result(self, r: Result) -> None:
        c = self.cams.get(r.camera)
        if c is None:
            return
        c.health[r.health] = c.health.get(r.health, 0) + 1
        c.latency_count += 1
        c.latency_sum += r.latency_s
        for i, b in enumerate(LATENCY_BUCKETS):
            if r.latency_s <= b:
                c.buckets[i] += 1
        if r.threshold is not None:
            c.threshold = r.threshold
        if r.score is not None:
            c.scored += 1
            c.ood += int(bool(r.is_ood))
            c.last_score = r.score
            c.scored_at.add(time.monotonic())
        c.last = {"frame": r.frame, "score": r.score, "is_ood": r.is_ood, "health": r.health,
                  "latency_s": r.latency_s, "capture_time": r.capture_time}
        c.points.append((r.frame, r.capture_time, r.score, r.is_ood))

    def frame(self, camera: str, index: int, image: Any) -> None:
        """The newest image of ``camera`` (not copied: frames are not written to once decoded)."""
        if image is None:
            return
        with self.lock:
            c = self.cams.get(camera)
            if c is not None:
                c.image, c.image_frame = image, index
                c.image_seq += 1
                self.lock.notify_all()

    # ----------------------------------------------------------------------------------------- reading
    def _fps(self, c: _Camera, now: float) -> float:
        return c.scored_at.rate(now)

    def _drops(self) -> dict[str, tuple[dict[str, int], int]]:
        stats = self.reader_stats() if self.reader_stats is not None else {}
        out = {}
        for n in self.cams:
            s = stats.get(n)
            dropped = {k: int(v) for k, v in dict(getattr(s, "dropped", {}) or {}).items()}
            out[n] = ({r: dropped.get(r, 0) for r in (*DROP_REASONS, *sorted(set(dropped) - set(DROP_REASONS)))},
                      int(getattr(s, "reconnects", 0) or 0))
        return out

    def metrics(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        drops = self._drops()
        now = time.monotonic()
        f = {k: Family(*v) for k, v in {
            "info": ("lfdn_stream_camera_info", "gauge", "A camera of the stream (value 1); uri redacted"),
            "status": ("lfdn_stream_camera_status", "gauge",
                       "1 for the camera's current status (from its status records), 0 for the others"),
            "frames": ("lfdn_stream_frames_total", "counter", "Frames handed to the scorer, by health (ok = scored)"),
            "scored": ("lfdn_stream_frames_scored_total", "counter", "Frames scored (health ok)"),
            "ood": ("lfdn_stream_ood_frames_total", "counter", "Scored frames above the alert on-threshold"),
            "fps": ("lfdn_stream_fps", "gauge", f"Scored frames per second over the last {self.fps_window:g} s"),
            "dropped": ("lfdn_stream_frames_dropped_total", "counter",
                        "Frames dropped before scoring, by reason (late: replaced by a newer frame of a live "
                        "camera; fps: above the target fps)"),
            "latency": ("lfdn_stream_latency_seconds", "histogram", "Capture to result time of every frame"),
            "reconnects": ("lfdn_stream_reconnects_total", "counter", "Reconnects of the source"),
            "events": ("lfdn_stream_events_total", "counter", "Alert events started"),
            "active": ("lfdn_stream_event_active", "gauge", "1 while an alert event is open"),
            "score": ("lfdn_stream_score", "gauge", "The last score (NaN before the first)"),
            "threshold": ("lfdn_stream_threshold", "gauge", "The alert on-threshold"),
        }.items()}
        with self.lock:
            for n, c in self.cams.items():
                cam = {"camera": n}
                f["info"].add({"camera": n, "uri": c.uri}, 1)
                shown = c.shown_status()
                for s in (*CAMERA_STATES, *([shown] if shown not in CAMERA_STATES else [])):
                    f["status"].add({"camera": n, "status": s}, int(s == shown))
                for h, k in c.health.items():
                    f["frames"].add({"camera": n, "health": h}, k)
                f["scored"].add(cam, c.scored)
                f["ood"].add(cam, c.ood)
                f["fps"].add(cam, self._fps(c, now))
                dropped, reconnects = drops[n]
                for reason, k in dropped.items():
                    f["dropped"].add({"camera": n, "reason": reason}, k)
                for b, k in zip(LATENCY_BUCKETS, c.buckets):
                    f["latency"].add({"camera": n, "le": format_value(b)}, k, "_bucket")
                f["latency"].add({"camera": n, "le": "+Inf"}, c.latency_count, "_bucket")
                f["latency"].add(cam, c.latency_sum, "_sum")
                f["latency"].add(cam, c.latency_count, "_count")
                f["reconnects"].add(cam, reconnects)
                f["events"].add(cam, c.events)
                f["active"].add(cam, int(c.event_active))
                f["score"].add(cam, math.nan if c.last_score is None else c.last_score)
                f["threshold"].add(cam, math.nan if c.threshold is None else c.threshold)
        return render(f.values())

    def state(self) -> dict[str, Any]:
        """The preview page's JSON (/api/state)."""
        drops = self._drops()
        now = time.monotonic()
        with self.lock:
            cams = {}
            for n, c in self.cams.items():
                dropped, reconnects = drops[n]
                cams[n] = {"uri": c.uri, "status": c.shown_status(), "frames": sum(c.health.values()),
                           "scored": c.scored,
                           "ood": c.ood, "events": c.events, "event_active": c.event_active,
                           "health": dict(c.health), "dropped": dropped, "reconnects": reconnects,
                           "fps": round(self._fps(c, now), 3), "threshold": _finite(c.threshold), "last": c.last,
                           "image_frame": c.image_frame if c.image is not None else None,
                           "latency_mean_s": _finite(c.latency_sum / c.latency_count if c.latency_count else None),
                           "points": [[fr, _finite(t), _finite(s), o] for fr, t, s, o in c.points]}
            return {"schema": "lfdn-edge.stream-state/1", "time": time.time(), "uptime_s": time.time() - self.t0,
                    "ended": self.ended, "cameras": cams, "events": list(self.events)}

    def jpeg(self, camera: str) -> Optional[tuple[bytes, int, int]]:
        """(JPEG bytes of the newest frame, its frame number, a sequence number that changes with each new frame)
        or None (no such camera or no frame yet). Encoded once per frame, whoever asks."""
        with self.lock:
            c = self.cams.get(camera)
            if c is None or c.image is None:
                return None
            if c.jpeg is not None and c.jpeg_seq == c.image_seq:
                return c.jpeg, c.image_frame, c.image_seq
            image, index, seq = c.image, c.image_frame, c.image_seq
        data = encode_jpeg(image, self.jpeg_quality)
        with self.lock:
            if c.image_seq == seq:
                c.jpeg, c.jpeg_seq = data, seq
        return data, index, seq

    def wait_frame(self, camera: str, after_seq: int, timeout: float) -> int:
        """Wait up to ``timeout`` for a frame of ``camera`` newer than ``after_seq``; the current sequence number."""
        with self.lock:
            c = self.cams.get(camera)
            if c is None:
                return -1
            if c.image_seq <= after_seq:
                self.lock.wait(timeout)
            return c.image_seq


def encode_jpeg(image: Any, quality: int = 80) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _finite(x: Optional[float]) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)
