"""One reader thread per source: open, decode, stamp times, hand frames to a buffer; reconnect with backoff.

Live sources (cameras, streams, test:// with live=1) keep only the newest frame: a frame not taken before the
next one arrives is dropped and counted ("late"); with a target fps, frames closer than 1/fps to the last kept
one are dropped and counted ("fps"). File sources (and live=0) block instead: nothing is dropped, the decoder
waits for the scorer; a target fps paces them. A failed or stalled source (an error, or no frame within the
read timeout) is reopened after an exponential, jittered, bounded backoff (logged with the URI redacted); a live
source goes on from where the camera is now, a file from the next frame. Nothing invents frames: a lost frame
is only a gap in the frame numbers.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .frames import CLOCK_PTS, CLOCK_RECEIVE, CLOCK_SOURCE, Frame, RawFrame, SourceError
from .uri import SourceSpec, redact

log = logging.getLogger("lfdn_edge.stream")


@dataclass
class Backoff:
    """Delay before reconnect attempt n (0-based): min(maximum, base * 2**n), times a jitter in [1-j, 1+j]."""

    base: float = 0.5
    maximum: float = 10.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.maximum, self.base * (2.0 ** min(attempt, 30)))
        return max(0.0, d * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))


@dataclass
class ReaderStats:
    frames: int = 0                     # frames handed to the buffer
    dropped: dict = field(default_factory=lambda: {"late": 0, "fps": 0})
    reconnects: int = 0
    errors: int = 0
    last_error: str = ""


def open_source(spec: SourceSpec, start: int, t0: float, read_timeout: float, stop: threading.Event) -> Any:
    """The decoder object for a spec (see lfdn_edge.stream.decode.decoder_name)."""
    from .decode import PyAVSource, decoder_name

    name = decoder_name(spec)
    if name == "synthetic":
        from .synthetic import SyntheticSource

        return SyntheticSource(spec, start, t0, read_timeout, stop)
    if name == "gstreamer":
        from .gst import GstSource

        return GstSource(spec, start, read_timeout, stop)
    return PyAVSource(spec, start, read_timeout, stop)


class FrameBuffer:
    """The frames of one camera waiting for the scorer: live = a slot that keeps the newest (older ones counted
    as dropped), else a bounded queue whose put waits. ``cond`` is shared by all cameras of a stream, so the
    batcher wakes when any of them has a frame."""

    def __init__(self, live: bool, cond: threading.Condition, stats: ReaderStats, capacity: int = 2):
        self.live = live
        self.cond = cond
        self.stats = stats
        self.capacity = 1 if live else max(1, capacity)
        self.items: collections.deque = collections.deque()

    def put(self, frame: Frame, stop: threading.Event) -> bool:
        with self.cond:
            if self.live:
                if self.items:
                    self.items.popleft()
                    self.stats.dropped["late"] += 1
            else:
                while len(self.items) >= self.capacity:
                    if stop.is_set():
                        return False
                    self.cond.wait(0.1)
            self.items.append(frame)
            self.stats.frames += 1
            self.cond.notify_all()
            return True

    def ready(self) -> bool:
        return bool(self.items)

    def take(self) -> Optional[Frame]:
        """Under ``cond``: the oldest waiting frame (live: the newest, the only one) or None."""
        if not self.items:
            return None
        f = self.items.popleft()
        self.cond.notify_all()
        return f


StatusCallback = Callable[[str, str, str], None]   # (camera, status, detail)


class Reader:
    """The thread that reads one source into its FrameBuffer."""

    def __init__(self, spec: SourceSpec, cond: threading.Condition, on_status: StatusCallback,
                 read_timeout: float = 5.0, backoff: Backoff = Backoff(), retries: Optional[int] = None,
                 seed: Optional[int] = None, opener: Callable[..., Any] = open_source, clips: Any = None,
                 prepare: Optional[Callable[[Any], Any]] = None):
        self.spec = spec
        # image -> the scorer's input (FrameScorer.resize) for every frame, in this thread (Stream's
        # prepare_in_readers; off by default: it also resizes the frames that are dropped unscored)
        self.prepare = prepare
        self.camera = spec.name
        self.stats = ReaderStats()
        self.buffer = FrameBuffer(spec.live, cond, self.stats)
        self.on_status = on_status
        self.read_timeout = read_timeout
        self.backoff = backoff
        # live sources retry forever by default; files a few times (a missing file is not going to appear)
        self.retries = retries if retries is not None else (None if spec.live else 2)
        self.rng = random.Random(seed)
        self.opener = opener
        self.clips = clips                 # the camera's packet ring and clips (stream/clips.py), or None
        self.stop_event = threading.Event()
        self.done = threading.Event()      # set when the thread has finished (ended, dead or stopped)
        self.state = "starting"
        self.thread = threading.Thread(target=self._run, name=f"lfdn-stream-reader-{self.camera}", daemon=True)
        self._t0 = time.time()
        self._next = 0
        self._last_kept: Optional[float] = None
        self._last_emit = 0.0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        with self.buffer.cond:
            self.buffer.cond.notify_all()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _status(self, status: str, detail: str = "") -> None:
        self.state = status
        self.on_status(self.camera, status, redact(detail))

    def _run(self) -> None:
        attempt = 0
        try:
            while not self.stop_event.is_set():
                src = None
                gone = "reconnect"   # why the connection ends, for a clip it cuts short
                try:
                    src = self.opener(self.spec, self._next, self._t0, self.read_timeout, self.stop_event)
                    src.open()
                    if self.clips is not None:
                        self.clips.attach(src)
                    self._status("connected", "")
                    anchor: Optional[float] = None
                    while not self.stop_event.is_set():
                        raw = src.read()
                        if raw is None:
                            if self.spec.kind in ("rtsp", "http") and not self.stop_event.is_set():
                                # a network stream does not end: the server closed it (killed, restarted)
                                raise SourceError(f"{self.spec.display}: the server closed the stream")
                            gone = "source ended"
                            if not self.stop_event.is_set():
                                self._status("ended", "end of source")
                            return
                        attempt = 0
                        anchor = self._hand_on(raw, anchor)
                    gone = "stream stopped"
                    return
                except (SourceError, OSError) as exc:
                    # a source may say where it goes on after a failure (test:// lost frames A..B: B+1)
                    resume = getattr(src, "resume_at", None)
                    if resume is not None:
                        self._next = max(self._next, int(resume))
                    if isinstance(exc, FileNotFoundError) and self.state == "starting":
                        self.stats.last_error = redact(str(exc))
                        self._status("dead", self.stats.last_error)
                        return
                    self.stats.errors += 1
                    self.stats.last_error = redact(str(exc))
                    if self.retries is not None and attempt >= self.retries:
                        log.error("%s: %s; giving up after %d reconnect attempts", self.spec.display,
                                  self.stats.last_error, attempt)
                        self._status("dead", self.stats.last_error)
                        return
                    delay = self.backoff.delay(attempt, self.rng)
                    attempt += 1
                    log.warning("%s: %s; reconnecting in %.2f s (attempt %d)", self.spec.display,
                                self.stats.last_error, delay, attempt)
                    self._status("reconnecting", f"{self.stats.last_error}; retry in {delay:.2f} s")
                    self.stats.reconnects += 1
                    self.stop_event.wait(delay)
                finally:
                    if self.clips is not None and src is not None:
                        self.clips.disconnect(gone)
                    if src is not None:
                        try:
                            src.close()
                        except Exception as exc:   # closing a broken connection: nothing left to do
                            log.debug("%s: close: %s", self.spec.display, redact(str(exc)))
        except ImportError as exc:
            self.stats.last_error = str(exc)
            self._status("dead", str(exc))
        finally:
            if self.stop_event.is_set() and self.state not in ("ended", "dead"):
                self.state = "stopped"
            self.done.set()
            with self.buffer.cond:
                self.buffer.cond.notify_all()

    def _hand_on(self, raw: RawFrame, anchor: Optional[float]) -> Optional[float]:
        now = time.time()
        self._next = raw.index + 1
        if raw.capture_time is not None:
            cap, clock = raw.capture_time, CLOCK_SOURCE
        elif raw.pts is not None:
            # a live stream's first frames can arrive late in a burst (the decoder's probing buffers them): a
            # frame is never captured after it is received, so the anchor is the earliest receive - pts seen
            if anchor is None or (self.spec.live and self.spec.kind != "file" and now - raw.pts < anchor):
                anchor = now - raw.pts
                if self.clips is not None:
                    self.clips.set_anchor(anchor)
            cap, clock = anchor + raw.pts, CLOCK_PTS
        else:
            cap, clock = now, CLOCK_RECEIVE
        if self.spec.kind == "file" and self.spec.live and clock == CLOCK_PTS and cap > now:
            # a file read as a live camera (drop=1 / live=1): its frames arrive at their presentation times
            # (real time), not as fast as they decode; a decoder that falls behind hands them on late
            self.stop_event.wait(cap - now)
            now = time.time()
        fps = self.spec.fps
        if fps and self.spec.live and self.spec.kind != "test":   # (test:// generates at fps itself)
            if self._last_kept is not None and cap - self._last_kept < 0.999 / fps:
                self.stats.dropped["fps"] += 1
                return anchor
            self._last_kept = cap
        elif fps and not self.spec.live and self.spec.kind != "test":   # pace a file at the target fps
            wait = self._last_emit + 1.0 / fps - time.monotonic()
            if wait > 0:
                self.stop_event.wait(wait)
            self._last_emit = time.monotonic()
        frame = Frame(self.camera, raw.index, raw.image, cap, clock, now, raw.pts, raw.error,
                      None if self.prepare is None or raw.image is None else self.prepare(raw.image))
        self.buffer.put(frame, self.stop_event)
        return anchor
