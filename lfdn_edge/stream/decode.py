"""Decoders: a source spec -> an object with open(), read() -> RawFrame (None at the end) and close().

PyAV (FFmpeg) decodes on the CPU every scheme except csi:// and gst:// (GStreamer, lfdn_edge.stream.gst): files
and image sequences, RTSP (TCP or UDP), HTTP(S) MJPEG, V4L2 devices and webcam indices. It gives presentation
timestamps, so capture times are PTS-derived (anchored at the receive time of the first frame). PyAV is
optional: ``pip install 'lfdn-edge[stream]'``; without it opening such a source raises an ImportError naming it.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from fractions import Fraction
from typing import Any, Callable, Optional

from .frames import RawFrame, SourceError, SourceTimeout
from .uri import SourceSpec, parse_size

PYAV_HINT = "PyAV is not installed: pip install 'lfdn-edge[stream]' (the package av) to decode videos and streams"
DEFAULT_SEQUENCE_FPS = 25.0


def import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise ImportError(f"{PYAV_HINT} ({exc})") from exc
    return av


def decoder_name(spec: SourceSpec, jetson: Optional[bool] = None) -> str:
    """Which decoder opens ``spec``: 'synthetic', 'pyav' or 'gstreamer' (csi://, gst://, and on a Jetson
    rtsp:// and video files, whose H.264/H.265 the Jetson decodes in hardware through nvv4l2decoder)."""
    from .gst import is_jetson

    if spec.kind == "test":
        return "synthetic"
    if spec.kind in ("csi", "gst"):
        return "gstreamer"
    forced = spec.options.get("decoder")
    if forced in ("pyav", "gstreamer"):
        return forced
    if (is_jetson() if jetson is None else jetson) and spec.kind in ("rtsp", "file") and not spec.is_sequence:
        return "gstreamer"
    return "pyav"


def pyav_open_args(spec: SourceSpec, read_timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
    """(file, keyword arguments of av.open) for a spec: pure, unit-tested."""
    o = spec.options
    kw: dict[str, Any] = {"options": {}}
    if spec.kind == "file":
        if spec.is_sequence:
            kw["format"] = "image2"
            kw["options"]["framerate"] = str(spec.fps or DEFAULT_SEQUENCE_FPS)
            if any(c in spec.target for c in "*?["):
                kw["options"]["pattern_type"] = "glob"
        return spec.target, kw
    if spec.kind == "rtsp":
        kw["options"].update({"rtsp_transport": o.get("transport", "tcp"),
                              "timeout": str(int(read_timeout * 1e6))})   # socket timeout, microseconds
        kw["timeout"] = (read_timeout, read_timeout)
        return spec.target, kw
    if spec.kind == "http":
        if "format" in o:
            kw["format"] = o["format"]
        if spec.live:
            # MJPEG over HTTP (multipart JPEGs, what IP cameras serve) carries no timestamps: FFmpeg would number
            # the parts at a nominal 25 per second whatever the camera sends. The demuxer's wall clock instead
            # (at arrival; in microseconds: PyavSource rebases the stream, see WALLCLOCK_TB): the frames and the
            # event clips' packets share that clock.
            kw["options"]["use_wallclock_as_timestamps"] = "1"
        kw["timeout"] = (read_timeout, read_timeout)
        return spec.target, kw
    if spec.kind in ("v4l2", "webcam"):
        kw["format"] = "v4l2"
        if "size" in o:
            w, h = parse_size(o["size"])
            kw["options"]["video_size"] = f"{w}x{h}"
        if spec.fps:
            kw["options"]["framerate"] = f"{spec.fps:g}"
        if "input_format" in o:
            kw["options"]["input_format"] = o["input_format"]
        return spec.target, kw
    raise ValueError(f"{spec.display}: PyAV does not open {spec.kind} sources")


NO_TIMESTAMPS = 0x80      # AVFMT_NOTIMESTAMPS (libavformat/avformat.h), av.format.Flags.no_timestamps
WALLCLOCK_TB = Fraction(1, 1_000_000)   # the time base of wall-clock pts (HTTP MJPEG) once the stream is open


def in_old_time_base(pts: int, old: Fraction, now: float) -> bool:
    """Whether a wall-clock pts is in the stream's first time base (a packet read while FFmpeg probed) rather than in
    microseconds: the reading that lands nearer the current time wins. Any first base other than 1 us puts the two
    readings at least a factor 2 apart (1/25 s: 40,000; MPEG-TS's 1/90000: 11)."""
    return abs(float(pts * old) - now) < abs(pts * 1e-6 - now)


class PyAVSource:
    """One video stream of a container opened with PyAV, decoded to RGB frames."""

    def __init__(self, spec: SourceSpec, start: int = 0, read_timeout: float = 5.0,
                 stop: Optional[threading.Event] = None):
        self.spec = spec
        self.start = start
        self.read_timeout = read_timeout
        self.container: Any = None
        self._frames: Any = None
        self._index = 0
        self._av: Any = None
        self._timestamps = True
        self._stream: Any = None
        self._rebase_from: Optional[Fraction] = None   # the stream's time base before the wall-clock rebase
        # called with every demuxed packet of the video stream before it is decoded (event clips, stream/clips.py)
        self.packet_sink: Optional[Callable[[Any], None]] = None

    def _check_exists(self) -> None:
        s = self.spec
        if s.kind == "file":
            if s.is_sequence:
                pat = s.target if any(c in s.target for c in "*?[") else re.sub(r"%0?\d*d", "*", s.target)
                if not glob.glob(pat):
                    raise FileNotFoundError(f"no image matches {s.display}")
            elif not os.path.isfile(s.target):
                raise FileNotFoundError(f"no such video file: {s.display}")
        if s.kind in ("v4l2", "webcam"):
            if "v4l2" not in self._av.formats_available:
                raise ImportError(f"{s.display}: this PyAV build has no v4l2 input (its FFmpeg was built without "
                                  "libavdevice's v4l2); install PyAV from source against a system FFmpeg with "
                                  "v4l2, or read the camera through gst://v4l2src device=...")
            if not os.path.exists(s.target):
                raise FileNotFoundError(f"no such camera device: {s.target}")

    def open(self) -> None:
        self._av = import_av()
        self._check_exists()
        file, kw = pyav_open_args(self.spec, self.read_timeout)
        try:
            self.container = self._av.open(file, mode="r", **kw)
        except self._av.FFmpegError as exc:
            raise SourceError(f"{self.spec.display}: cannot open: {_msg(exc)}") from None
        if not self.container.streams.video:
            self.close()
            raise SourceError(f"{self.spec.display}: no video stream")
        stream = self.container.streams.video[0]
        if self.spec.kind in ("rtsp", "http"):
            # FFmpeg flags damaged frames (lost or corrupt packets) only with its error concealment, which
            # slice threading turns off: a network stream is decoded in this thread alone
            stream.codec_context.thread_count = 1
        self._stream = stream
        # the wall clock is stored in the stream's time base (mpjpeg: 1/25 s, so 40 ms steps, and a burst of
        # parts shares one pts): from here on in microseconds. The packets read while the stream was probed
        # already carry the old base: _decode rescales those (in_old_time_base tells them apart).
        self._rebase_from = None
        if "use_wallclock_as_timestamps" in kw["options"] and stream.time_base != WALLCLOCK_TB:
            self._rebase_from = stream.time_base
            stream.time_base = WALLCLOCK_TB
        # a live source in a format without timestamps, not given the wall clock (pyav_open_args does for HTTP),
        # gets pts made up at a nominal rate: the receive time instead. Files keep theirs (an image sequence's
        # pts come from its frame rate: a replay's clock).
        self._timestamps = (self.spec.kind == "file" or not self.spec.live or "use_wallclock_as_timestamps" in
                            kw["options"] or not int(self.container.format.flags) & NO_TIMESTAMPS)
        self._damaged = False
        self._frames = self._decode(stream)
        # a file goes on after the frames already handed on (read() skips them); a live stream's frames after
        # a reconnect are new ones: numbered on from there, none skipped
        self._index = 0 if self.spec.kind == "file" else self.start

    @property
    def timestamps(self) -> bool:
        """Whether the container's timestamps are real (False: HTTP MJPEG and other formats without them)."""
        return self._timestamps

    @property
    def video_stream(self) -> Any:
        """The input video stream (open), e.g. as the template of a stream copy."""
        return self._stream

    def _decode(self, stream: Any) -> Any:
        """container.decode(stream), with each packet handed to packet_sink first (flush packets are not)."""
        for packet in self.container.demux(stream):
            old = self._rebase_from
            if old is not None and packet.pts is not None:
                if in_old_time_base(packet.pts, old, time.time()):
                    # FFmpeg rounded the arrival time to the nearest coarse tick: the earliest time it can stand
                    # for (half a tick before), so a probed packet is never stamped after the exact ones after it
                    packet.pts = int((packet.pts - 0.5) * old / WALLCLOCK_TB)
                    if packet.dts is not None:
                        packet.dts = int((packet.dts - 0.5) * old / WALLCLOCK_TB)
                    packet.time_base = WALLCLOCK_TB
                else:
                    self._rebase_from = None   # the probed packets are behind: every later one is in microseconds
            if self.packet_sink is not None and packet.size:
                self.packet_sink(packet)
            yield from packet.decode()

    def read(self) -> Optional[RawFrame]:
        av = self._av
        while True:
            try:
                frame = next(self._frames)
            except StopIteration:
                return None
            except av.error.ExitError as exc:   # FFmpeg's interrupt callback: the read timeout
                raise SourceTimeout(f"{self.spec.display}: no data for {self.read_timeout:g} s ({_msg(exc)})") \
                    from None
            except av.InvalidDataError as exc:   # one undecodable packet: report it, go on
                self._frames = self._decode(self._stream)   # (the raise ended the generator)
                k = self._index
                self._index += 1
                if k >= self.start:
                    return RawFrame(k, None, None, None, f"undecodable: {_msg(exc)}")
                continue
            except (av.FFmpegError, OSError) as exc:
                raise SourceError(f"{self.spec.display}: {_msg(exc)}") from None
            k = self._index
            self._index += 1
            if k < self.start:   # after a reconnect to a file: the frames already handed on
                continue
            pts = None if frame.time is None or not self._timestamps else float(frame.time)
            # damaged data (concealed by the decoder), and the frames predicted from it up to the next I-frame:
            # not what the camera saw
            self._damaged = frame.is_corrupt or (self._damaged and not (frame.key_frame or int(frame.pict_type) == 1))
            if self._damaged:
                return RawFrame(k, None, pts, None, "undecodable: damaged data (concealed by the decoder)")
            return RawFrame(k, frame.to_ndarray(format="rgb24"), pts)

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            finally:
                self.container = None

    def describe(self) -> dict:
        st = self._stream
        cc = st.codec_context
        rate = st.average_rate or st.guessed_rate
        return {"decoder": "pyav", "format": self.container.format.name, "codec": cc.name, "width": cc.width,
                "height": cc.height, "fps": float(rate) if rate else None, "frames": st.frames or None,
                "duration_s": float(st.duration * st.time_base) if st.duration and st.time_base else None,
                "pixel_format": cc.format.name if cc.format else None}


def _msg(exc: BaseException) -> str:
    from .uri import redact

    return redact(str(exc))
