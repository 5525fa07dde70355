"""Event clips: a few seconds before and after each alert event, written from the packets already received (stream
copy, no re-encoding) where the source is encoded video decoded by PyAV.

Per camera a :class:`PacketRing` keeps the demuxed packets of the current connection (bytes, pts/dts, keyframe
flag, time base) for ``pre_s`` + ``slack_s`` seconds, always from a keyframe (so a clip decodes from its first
packet), and at most ``ring_bytes`` bytes (oldest GOP dropped first; a GOP larger than that is not kept). A
packet's capture time is the frames' clock: ``anchor + pts`` with the anchor the reader took at the connection's
first frame (lfdn_edge.stream.reader), so clip times and result/event times are the same numbers.

An event start opens a :class:`ClipJob`: the ring's packets from the last keyframe at or before ``start - pre_s``
(the ring's first keyframe when it does not reach back so far), then every new packet. Packets are taken in
decode order while their decode time is at most ``end + post_s`` (or the first packet's time + ``max_s``), less
the trailing ones shown after that time: without B-frames the clip ends exactly at the last frame at or before
it; with B-frames it may hold a few frames after it (at most the reorder depth), the references of B-frames
inside the window. A reconnect (or the source's end) stops the clip there. One writer thread
(``lfdn-stream-clips``) muxes the packets (timestamps rebased so the first keyframe is at 0) into
``.NAME.part`` and renames it to NAME when the clip is complete: the scoring thread never waits on disk, and no
partial file ever has the final name. The container: MP4 for the codecs players expect there (MP4_CODECS),
else the first of Matroska, MP4, NUT whose muxer takes the codec. A :class:`~lfdn_edge.stream.records.Clip`
record then says what was written. Sources without packets (test://, GStreamer) give no clip: each of their event records says why.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from .records import Clip

log = logging.getLogger("lfdn_edge.stream")

# codecs written into MP4 (ISO BMFF knows them and players expect them there); the others go into Matroska where
# its muxer takes them (containers_for)
MP4_CODECS = ("h264", "hevc", "av1", "mpeg4", "mjpeg")
# capture times are epoch seconds (~1.8e9: a double's step there is 2.4e-7 s): a packet this close to a bound is in
EPS_S = 1e-4


@dataclass(frozen=True)
class ClipConfig:
    """Where and how long: ``dir`` (created if missing), seconds before the event's start (``pre_s``) and after
    its end (``post_s``), at most ``max_s`` seconds per clip; ``ring_bytes`` bounds each camera's packet ring;
    ``slack_s``: the ring keeps this much more than ``pre_s`` (the reader runs ahead of the scorer by the frames
    in flight, so an event is known a little after its first packet arrived)."""

    dir: str
    pre_s: float = 3.0
    post_s: float = 3.0
    max_s: float = 60.0
    ring_bytes: int = 64 << 20
    slack_s: float = 2.0

    def __post_init__(self) -> None:
        if not str(self.dir):
            raise ValueError("clips: need a directory")
        if self.pre_s < 0 or self.post_s < 0 or self.slack_s < 0:
            raise ValueError("clips: pre_s, post_s and slack_s must be >= 0")
        if not self.max_s > 0 or self.ring_bytes < 1:
            raise ValueError("clips: max_s must be > 0 and ring_bytes >= 1")


@dataclass
class StoredPacket:
    data: bytes
    pts: int            # in time_base units (synthesised from the receive time when the source gave none)
    dts: int
    duration: int
    key: bool
    time_base: Any      # fractions.Fraction
    pts_s: float        # pts * time_base
    dts_s: float


def containers_for(codec: str) -> list[str]:
    """The FFmpeg muxers to try for a codec, best first: MP4 for the codecs players expect there, else Matroska
    (most codecs), else MP4 (FFmpeg's MP4 takes a few that Matroska does not, PNG), else NUT (every codec)."""
    first = ["mp4"] if codec in MP4_CODECS else []
    return first + [f for f in ("matroska", "mp4", "nut") if f not in first]


EXTENSIONS = {"mp4": "mp4", "matroska": "mkv", "nut": "nut"}


class PacketRing:
    """One connection's recent packets, from a keyframe, bounded by duration and bytes (not thread-safe: the
    CameraClips lock guards it)."""

    def __init__(self, keep_s: float, max_bytes: int):
        self.keep_s = keep_s
        self.max_bytes = max_bytes
        self.items: collections.deque[StoredPacket] = collections.deque()
        self.keys: collections.deque[StoredPacket] = collections.deque()   # the keyframes among items
        self.bytes = 0
        self.peak_bytes = 0
        self.dropped = 0          # packets not kept (a GOP over max_bytes, or waiting for a keyframe)

    def clear(self) -> None:
        self.items.clear()
        self.keys.clear()
        self.bytes = 0

    def _drop_gop(self) -> None:
        """Drop the oldest GOP (its keyframe and everything up to the next keyframe)."""
        self.keys.popleft()
        nxt = self.keys[0] if self.keys else None
        while self.items and self.items[0] is not nxt:
            self.bytes -= len(self.items.popleft().data)

    def add(self, p: StoredPacket) -> bool:
        """Keep ``p``; False when it cannot be kept (it does not start at a keyframe, or its GOP is too big)."""
        while self.items and self.bytes + len(p.data) > self.max_bytes:
            self._drop_gop()
        if not self.items and not p.key or len(p.data) > self.max_bytes:
            self.dropped += 1   # this GOP does not fit: nothing of it is kept until the next keyframe
            return False
        self.items.append(p)
        if p.key:
            self.keys.append(p)
        self.bytes += len(p.data)
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        # by duration: drop whole GOPs while the next keyframe is still at or before newest - keep_s
        horizon = p.pts_s - self.keep_s
        while len(self.keys) > 1 and self.keys[1].pts_s <= horizon + EPS_S:
            self._drop_gop()
        return True

    def from_keyframe_before(self, t_s: float) -> list[StoredPacket]:
        """The packets from the last keyframe whose pts is at or before t_s (stream seconds), or from the first."""
        start = 0
        for i, q in enumerate(self.items):
            if q.key and q.pts_s <= t_s + EPS_S:
                start = i
        return list(self.items)[start:]


class ClipJob:
    """One event's clip: packets collected (reader thread) and written (writer thread)."""

    def __init__(self, camera: str, event_id: str, path: Path, template: Any, codec: str, fmt: str,
                 anchor: float, packets: list[StoredPacket], pre_s: float, max_s: float):
        self.camera = camera
        self.event_id = event_id
        self.path = path
        self.tmp = path.with_name(f".{path.name}.part")
        self.holder, self.template = template   # (the never-written container, its stream)
        self.codec = codec
        self.fmt = fmt
        self.anchor = anchor
        self.connection = 0             # CameraClips.connections when it started
        self.pending: collections.deque[StoredPacket] = collections.deque(packets)
        self.collecting = True          # new packets of the camera still come in
        self.waiting_key = not packets  # the ring was empty: start at the next keyframe
        self.max_s = max_s
        self.first_s: Optional[float] = packets[0].pts_s if packets else None
        self.limit_max = (self.first_s + max_s) if packets else None   # stream seconds
        self.last_dts_s = packets[-1].dts_s if packets else -float("inf")
        self.limit: Optional[float] = None   # stream seconds: end + post, once the event has ended
        self.safe = -float("inf")            # packets up to here may be written now (the end is later)
        self.finishing = False
        self.reason = ""
        # written so far
        self.out: Any = None
        self.ostream: Any = None
        self.frames = 0
        self.bytes = 0
        self.min_pts: Optional[float] = None
        self.max_pts: Optional[float] = None
        self.base: Optional[int] = None
        self.last_dts: Optional[int] = None
        self.error = ""

    def bound(self) -> float:
        b = self.limit if self.limit is not None else float("inf")
        return min(b, self.limit_max if self.limit_max is not None else float("inf")) + EPS_S

    def take(self, p: StoredPacket) -> None:
        """A new packet of the camera (under the lock)."""
        if self.waiting_key:
            if not p.key:
                return
            self.waiting_key = False
            self.first_s = p.pts_s
            self.limit_max = p.pts_s + self.max_s
        self.last_dts_s = p.dts_s
        if p.dts_s > self.bound():   # decode order: every later packet is later still
            self.collecting = False
            self.finishing = True
            if not self.reason:
                self.reason = "complete" if self.limit is not None and p.dts_s > self.limit + EPS_S else "max length"
            return
        self.pending.append(p)


class CameraClips:
    """The packet ring and clip jobs of one camera. The reader thread calls connect / packet / set_anchor /
    disconnect, the scoring thread event / progress; the writer thread takes the packets to write."""

    def __init__(self, camera: str, config: ClipConfig, writer: ClipWriter, note: str = ""):
        self.camera = camera
        self.c = config
        self.writer = writer
        self.lock = writer.cond
        self.ring = PacketRing(config.pre_s + config.slack_s, config.ring_bytes)
        self.note = note            # why this camera gives no clips ("" = it does)
        self.template: Any = None   # a copy of the input stream's codec parameters (outlives the input)
        self._holder: Any = None
        self.codec = ""
        self.fmt = ""               # the clips' muxer (containers_for)
        self.time_base: Any = None
        self.anchor: Optional[float] = None
        self._receive_t0: Optional[float] = None
        self.connected = False
        self.gone = ""                            # why the last connection ended
        self.jobs: dict[str, ClipJob] = {}        # by event id, until written
        self.written = 0
        self.failed = 0
        self.connections = 0
        self.timestamps = True                    # the source's timestamps are real (attach)

    # ------------------------------------------------------------------------------------ reader thread
    def attach(self, src: Any) -> None:
        """A source was opened: take its packets when it has them (PyAVSource), else note why there are none."""
        stream = getattr(src, "video_stream", None)
        if stream is None or not hasattr(src, "packet_sink"):
            if not self.note:
                self.note = f"no clips: the {type(src).__name__} source gives decoded frames, not encoded packets"
                log.warning("%s: %s", self.camera, self.note)
            return
        import av

        errors = []
        for fmt in containers_for(stream.codec_context.name):
            try:   # a never-written container that holds a copy of the codec parameters (and checks the muxer)
                holder = av.open(io.BytesIO(), "w", format=fmt)
                template = holder.add_stream_from_template(stream)
                break
            except Exception as exc:   # this muxer does not take the codec: the next one
                errors.append(f"{fmt}: {exc}")
        else:
            with self.lock:
                self.note = f"no clips: no muxer takes the {stream.codec_context.name} stream ({'; '.join(errors)})"
                self.connected = False
            log.warning("%s: %s", self.camera, self.note)
            return
        with self.lock:
            self._holder, self.template, self.fmt = holder, template, fmt
            self.codec = stream.codec_context.name
            self.time_base = stream.time_base
            self.ring.clear()
            self.anchor = None
            self._receive_t0 = None
            self.timestamps = bool(getattr(src, "timestamps", True))
            self.connected = True
            self.connections += 1
            self.note = ""
        src.packet_sink = self.packet

    def set_anchor(self, anchor: float) -> None:
        """The reader's capture-time anchor of this connection (capture = anchor + pts seconds). A live stream's
        anchor can move earlier while its first frames arrive in a burst (the reader takes the earliest receive
        - pts): the clips follow it, so they keep the results' clock."""
        with self.lock:
            self.anchor = anchor

    def packet(self, pkt: Any) -> None:
        """A demuxed packet of the video stream (called by PyAVSource before it is decoded)."""
        tb = pkt.time_base or self.time_base
        pts, dts = (pkt.pts, pkt.dts) if self.timestamps else (None, None)
        if pts is None and dts is None:   # no timestamps: the receive time (the frames get the receive clock)
            now = time.time()
            with self.lock:
                if self._receive_t0 is None:
                    self._receive_t0 = now
                    if self.anchor is None:
                        self.anchor = now
                rel = now - self._receive_t0
            pts = dts = int(round(rel / tb))
        elif pts is None:
            pts = dts
        elif dts is None:
            dts = pts
        p = StoredPacket(bytes(pkt), int(pts), int(dts), int(pkt.duration or 0), bool(pkt.is_keyframe), tb,
                         float(pts * tb), float(dts * tb))
        with self.lock:
            self.ring.add(p)
            woke = False
            for job in self.jobs.values():
                if job.collecting:
                    job.take(p)
                    woke = True
            if woke:
                self.lock.notify_all()

    def disconnect(self, reason: str) -> None:
        """The connection is gone (a reconnect, the source's end, the stream stopping): open clips end here."""
        with self.lock:
            self.connected = False
            self.gone = reason
            for job in self.jobs.values():
                if job.collecting:
                    job.collecting = False
                    job.reason = job.reason or reason
                    job.finishing = job.limit is not None   # else when the event ends (or the stream closes)
            self.lock.notify_all()

    # ------------------------------------------------------------------------------------ scoring thread
    def event(self, ev: Any) -> None:
        """An event record (start / update / end): start or end the clip; put its path (or why there is none)
        on the record."""
        with self.lock:
            job = self.jobs.get(ev.id)
            if ev.kind == "start" and job is None and not self.note:
                job = self._start(ev)
            if job is not None:
                ev.clip = str(job.path)
                if ev.kind == "end" and job.limit is None:
                    # an event that ends on a later connection (after a reconnect) is on another clock: the clip
                    # keeps what its own connection gave
                    same = job.connection == self.connections
                    job.limit = ev.end_time - job.anchor + self.c.post_s if same else float("inf")
                    if job.collecting and job.last_dts_s > job.limit + EPS_S:   # its packets have all come already
                        job.collecting = False
                        job.reason = job.reason or "complete"
                    if not job.collecting:
                        job.finishing = True
                self.lock.notify_all()
            elif ev.id in self.writer.done_paths:
                ev.clip = self.writer.done_paths[ev.id]
            else:
                ev.clip_note = self.note or "no clip: no packets of this event's connection"

    def progress(self, event_id: str, t: float) -> None:
        """The event is still on at capture time t: its end (hence the clip's) is at t + post_s or later."""
        with self.lock:
            job = self.jobs.get(event_id)
            if job is not None and job.connection == self.connections:
                job.safe = max(job.safe, t - job.anchor + self.c.post_s)
                self.lock.notify_all()

    def _start(self, ev: Any) -> Optional[ClipJob]:
        if self.template is None or self.anchor is None:
            return None
        fmt, ext = self.fmt, EXTENSIONS[self.fmt]
        packets = self.ring.from_keyframe_before(ev.start_time - self.anchor - self.c.pre_s)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ev.start_time)) + f"{ev.start_time % 1:.3f}"[1:]
        path = self.writer.unique(f"{_safe(ev.id)}_{stamp}Z.{ext}")
        job = ClipJob(self.camera, ev.id, path, (self._holder, self.template), self.codec, fmt, self.anchor, packets, self.c.pre_s,
                      self.c.max_s)
        if not self.connected:   # the scorer is behind a source that has ended: the clip has what was received
            job.collecting, job.reason = False, self.gone
            job.finishing = not packets
        job.connection = self.connections
        self.jobs[ev.id] = job
        self.writer.add(self, job)
        return job

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"written": self.written, "failed": self.failed, "ring_peak_bytes": self.ring.peak_bytes,
                    "note": self.note or None}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "clip"


class ClipWriter:
    """The thread that muxes every camera's clips (stream copy) and renames each complete file into place."""

    def __init__(self, config: ClipConfig, emit: Callable[[Clip], None]):
        self.c = config
        self.dir = Path(config.dir)
        self.dir.mkdir(parents=True, exist_ok=True)   # fails now, in the caller's thread, when it cannot
        self.emit = emit
        self.cond = threading.Condition()
        self.jobs: list[tuple[CameraClips, ClipJob]] = []
        self.done_paths: dict[str, str] = {}
        self._names: set[str] = set()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="lfdn-stream-clips", daemon=True)
        self._started = False

    def camera(self, name: str, pre_s: Optional[float] = None, post_s: Optional[float] = None,
               note: str = "") -> CameraClips:
        """A camera's clips, with its own pre/post-roll where it has them."""
        c = replace(self.c, pre_s=self.c.pre_s if pre_s is None else float(pre_s),
                    post_s=self.c.post_s if post_s is None else float(post_s))
        return CameraClips(name, c, self, note)

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def unique(self, name: str) -> Path:
        """A file name in dir used neither by an earlier clip nor by a file there (under the lock)."""
        stem, dot, ext = name.rpartition(".")
        cand, k = name, 1
        while cand in self._names or (self.dir / cand).exists():
            k += 1
            cand = f"{stem}-{k}{dot}{ext}"
        self._names.add(cand)
        return self.dir / cand

    def add(self, cam: CameraClips, job: ClipJob) -> None:
        self.jobs.append((cam, job))
        self.cond.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Finish every clip with the packets it has (the sources are closed by now), wait for the thread."""
        with self.cond:
            self._closing = True
            for _, job in self.jobs:
                job.collecting = False
                job.finishing = True
                job.reason = job.reason or "stream end"
            self.cond.notify_all()
        if self._started:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("clips: the writer thread did not finish in %.0f s", timeout)

    def _run(self) -> None:
        while True:
            work: list[tuple[CameraClips, ClipJob, list[StoredPacket], bool]] = []
            with self.cond:
                while True:
                    for cam, job in self.jobs:
                        batch = []
                        if job.finishing:   # every packet decoded by the end, less those shown after it
                            bound = job.bound()   # and needed by no packet left (a P-frame after a cut B-frame)
                            while job.pending and job.pending[0].dts_s <= bound:
                                batch.append(job.pending.popleft())
                            while batch and batch[-1].pts_s > bound:
                                batch.pop()
                        else:   # while the event goes on: what is shown before its end can be at the earliest
                            bound = min(job.safe, job.bound())
                            while job.pending and job.pending[0].pts_s <= bound:
                                batch.append(job.pending.popleft())
                        if batch or job.finishing:
                            work.append((cam, job, batch, job.finishing))
                    if work or (self._closing and not self.jobs):
                        break
                    self.cond.wait(0.5)
            if not work:
                return
            for cam, job, batch, finish in work:
                self._write(job, batch)
                if finish:
                    rec = self._finish(job)
                    with self.cond:
                        self.jobs = [(c, j) for c, j in self.jobs if j is not job]
                        cam.jobs.pop(job.event_id, None)
                        if rec.path is not None:
                            cam.written += 1
                            self.done_paths[job.event_id] = rec.path
                        else:
                            cam.failed += 1
                    self.emit(rec)

    def _write(self, job: ClipJob, batch: list[StoredPacket]) -> None:
        if job.error or not batch:
            return
        try:
            import av

            if job.out is None:
                job.out = av.open(str(job.tmp), "w", format=job.fmt)
                job.ostream = job.out.add_stream_from_template(job.template)
                job.base = batch[0].pts
            for p in batch:
                q = av.Packet(p.data)
                dts = p.dts - job.base
                if job.last_dts is not None and dts <= job.last_dts:   # muxers need increasing dts
                    dts = job.last_dts + 1
                job.last_dts = dts
                q.pts, q.dts = max(p.pts - job.base, dts), dts
                q.duration = p.duration
                q.is_keyframe = p.key
                q.time_base = p.time_base
                q.stream = job.ostream
                job.out.mux(q)
                job.frames += 1
                job.bytes += len(p.data)
                job.min_pts = p.pts_s if job.min_pts is None else min(job.min_pts, p.pts_s)
                job.max_pts = p.pts_s if job.max_pts is None else max(job.max_pts, p.pts_s)
        except Exception as exc:   # a full disk, a muxer refusing the stream: this clip fails, the stream goes on
            job.error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: clip %s failed: %s", job.camera, job.path.name, job.error)

    def _finish(self, job: ClipJob) -> Clip:
        if job.out is not None:
            try:
                job.out.close()
            except Exception as exc:
                job.error = job.error or f"{type(exc).__name__}: {exc}"
        if not job.error and job.frames == 0:
            job.error = "no packets"
        if job.error:
            try:
                job.tmp.unlink()
            except FileNotFoundError:
                pass
            return Clip(job.camera, job.event_id, None, None, None, 0, 0.0, job.codec, job.fmt, 0, job.reason,
                        job.error)
        os.replace(job.tmp, job.path)
        a = job.anchor
        first, last = a + job.min_pts, a + job.max_pts   # type: ignore[operator]
        return Clip(job.camera, job.event_id, str(job.path), first, last, job.frames, last - first, job.codec,
                    job.fmt, job.bytes, job.reason or "complete", "")
