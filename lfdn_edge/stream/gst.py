"""GStreamer: the pipeline strings (pure functions, unit-tested without GStreamer) and a guarded source.

csi://N -> nvarguscamerasrc (Jetson CSI camera); on a Jetson rtsp:// and H.264/H.265 video files go through
nvv4l2decoder (hardware decoding); gst://<pipeline> is the user's pipeline. Every pipeline ends in
``videoconvert ! video/x-raw,format=RGB ! appsink name=lfdn_sink`` so frames arrive as RGB. The runtime side
needs GStreamer and PyGObject (Debian: python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0, in a venv
made with --system-site-packages); without them opening such a source raises an ImportError saying so.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Optional

from .frames import RawFrame, SourceError, SourceTimeout
from .uri import SourceSpec, parse_size, redact

SINK = "lfdn_sink"
GST_HINT = ("GStreamer with PyGObject is not available: install python3-gi, gir1.2-gstreamer-1.0 and "
            "gir1.2-gst-plugins-base-1.0 (Debian/JetPack) and use a venv made with --system-site-packages")


def is_jetson(root: str = "/") -> bool:
    """A Jetson (L4T): /etc/nv_tegra_release exists, or the device tree names an NVIDIA Tegra."""
    if os.path.exists(os.path.join(root, "etc/nv_tegra_release")):
        return True
    try:
        with open(os.path.join(root, "proc/device-tree/compatible"), "rb") as f:
            return b"nvidia,tegra" in f.read()
    except OSError:
        return False


def appsink_tail(max_buffers: int = 2) -> str:
    """The pipeline's end. drop=false: a full appsink holds the pipeline back rather than dropping buffers, which
    nothing would count (a non-live pipeline lost 37 of 45 buffers that way); the reader pulls every buffer at
    once and its newest-frame slot drops (and counts, as late) what the scorer cannot take."""
    return (f"videoconvert ! video/x-raw,format=RGB ! appsink name={SINK} max-buffers={max_buffers} "
            "drop=false sync=false emit-signals=false")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def csi_pipeline(sensor: int, size: tuple[int, int] = (1280, 720), fps: float = 30.0) -> str:
    w, h = size
    return (f"nvarguscamerasrc sensor-id={int(sensor)} ! video/x-raw(memory:NVMM),width={w},height={h},"
            f"framerate={int(round(fps))}/1 ! nvvidconv ! video/x-raw,format=BGRx ! " + appsink_tail())


def _depay(codec: str) -> tuple[str, str]:
    c = codec.lower()
    if c in ("h264", "avc"):
        return "rtph264depay", "h264parse"
    if c in ("h265", "hevc"):
        return "rtph265depay", "h265parse"
    raise ValueError(f"codec {codec!r}: the Jetson pipelines know h264 and h265")


def rtsp_pipeline(url: str, transport: str = "tcp", codec: str = "h264", latency_ms: int = 200) -> str:
    depay, parse = _depay(codec)
    proto = {"tcp": "tcp", "udp": "udp"}[transport]
    return (f"rtspsrc location={_quote(url)} protocols={proto} latency={int(latency_ms)} ! {depay} ! {parse} ! "
            "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! " + appsink_tail())


def file_pipeline(path: str, codec: str = "h264", live: bool = False) -> str:
    _, parse = _depay(codec)
    ext = os.path.splitext(path)[1].lower()
    demux = {".mp4": "qtdemux", ".mov": "qtdemux", ".mkv": "matroskademux", ".webm": "matroskademux",
             ".ts": "tsdemux"}.get(ext)
    head = f"filesrc location={_quote(path)} ! " + (f"{demux} ! " if demux else "")
    return head + f"{parse} ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! " + \
        appsink_tail(2 if live else 4)


def user_pipeline(text: str) -> str:
    """gst://<pipeline>: used as given when it already has an appsink named lfdn_sink, else the tail is added."""
    if f"name={SINK}" in text:
        return text
    return text.rstrip().rstrip("!").rstrip() + " ! " + appsink_tail()


def pipeline_for(spec: SourceSpec) -> str:
    """The pipeline string of a spec that GStreamer opens (csi, gst, and rtsp/file on a Jetson)."""
    o = spec.options
    if spec.kind == "csi":
        return csi_pipeline(int(spec.target), parse_size(o["size"]) if "size" in o else (1280, 720),
                            spec.fps or 30.0)
    if spec.kind == "gst":
        return user_pipeline(spec.target)
    if spec.kind == "rtsp":
        return rtsp_pipeline(spec.target, o.get("transport", "tcp"), o.get("codec", "h264"),
                             int(o.get("latency", "200")))
    if spec.kind == "file":
        return file_pipeline(spec.target, o.get("codec", "h264"), spec.live)
    raise ValueError(f"{spec.display}: no GStreamer pipeline for {spec.kind} sources")


def import_gst() -> Any:
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError) as exc:
        raise ImportError(f"{GST_HINT} ({exc})") from exc
    Gst.init(None)
    return Gst


class GstSource:
    """Frames from a GStreamer pipeline's appsink (buffer PTS -> pts)."""

    def __init__(self, spec: SourceSpec, start: int = 0, read_timeout: float = 5.0,
                 stop: Optional[threading.Event] = None):
        self.spec = spec
        self.read_timeout = read_timeout
        self.pipeline: Any = None
        self._index = start

    def open(self) -> None:
        gst = import_gst()
        self._gst = gst
        text = pipeline_for(self.spec)
        try:
            self.pipeline = gst.parse_launch(text)
        except Exception as exc:   # GLib.Error
            raise SourceError(f"{self.spec.display}: bad pipeline {redact(text)}: {redact(str(exc))}") from None
        self.sink = self.pipeline.get_by_name(SINK)
        if self.pipeline.set_state(gst.State.PLAYING) == gst.StateChangeReturn.FAILURE:
            self.close()
            raise SourceError(f"{self.spec.display}: the pipeline does not start: {redact(text)}")

    def read(self) -> Optional[RawFrame]:
        import numpy as np

        gst = self._gst
        t_end = time.monotonic() + self.read_timeout
        while True:
            sample = self.sink.emit("try-pull-sample", int(0.2 * gst.SECOND))
            if sample is not None:
                break
            if self.sink.get_property("eos"):
                return None
            if time.monotonic() > t_end:
                raise SourceTimeout(f"{self.spec.display}: no frame for {self.read_timeout:g} s")
        caps = sample.get_caps().get_structure(0)
        w, h = caps.get_value("width"), caps.get_value("height")
        buf = sample.get_buffer()
        ok, info = buf.map(gst.MapFlags.READ)
        if not ok:
            k = self._index
            self._index += 1
            return RawFrame(k, None, None, None, "unmappable buffer")
        try:
            stride = len(info.data) // h
            img = np.frombuffer(info.data, np.uint8).reshape(h, stride)[:, :w * 3].reshape(h, w, 3).copy()
        finally:
            buf.unmap(info)
        pts = None if buf.pts == gst.CLOCK_TIME_NONE else buf.pts / gst.SECOND
        k = self._index
        self._index += 1
        return RawFrame(k, img, pts)

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.set_state(self._gst.State.NULL)
            self.pipeline = None

    def describe(self) -> dict:
        return {"decoder": "gstreamer", "pipeline": redact(pipeline_for(self.spec))}
