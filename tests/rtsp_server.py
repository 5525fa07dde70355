"""A small RTSP server for the stream tests: serves an H.264 MP4 file in real time, looping, without re-encoding.

Run with Debian's system Python (GStreamer's gst-rtsp-server through PyGObject):

    /usr/bin/python3 tests/rtsp_server.py --file clip.mp4 --port 8554 --mount /cam [--user U --password P]

Debian packages: python3-gi, gir1.2-gst-rtsp-server-1.0 (it brings gir1.2-gstreamer-1.0 and
gir1.2-gst-plugins-base-1.0), gstreamer1.0-plugins-base (appsrc, appsink), gstreamer1.0-plugins-good (qtdemux,
rtph264pay, the RTP/UDP elements the server uses). h264parse (gstreamer1.0-plugins-bad) is used when it is
there; rtph264pay takes qtdemux's AVC access units without it.

The file's access units are read once (filesrc ! qtdemux [! h264parse] ! appsink), then every client's media
gets them from an appsrc with their own timestamps, shifted by the clip's duration at each loop; the server's
sinks pace them in real time (each connection starts at the clip's first frame, a keyframe). It binds
127.0.0.1 (``--host``) on ``--port`` (0 = any free one), prints ``READY rtsp://HOST:PORT/MOUNT`` (credentials
never printed) on stdout once it listens, and stops cleanly on SIGTERM or SIGINT (exit status 0).
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def load_access_units(path: str, use_parser: bool) -> tuple[Gst.Caps, list[tuple[bytes, int, int, int, bool]]]:
    """(caps, [(data, pts, dts, duration, keyframe)]) of the first H.264 video track of an MP4 file."""
    parse = "h264parse ! video/x-h264,stream-format=avc,alignment=au ! " if use_parser else ""
    loc = path.replace("\\", "\\\\").replace('"', '\\"')
    pipe = Gst.parse_launch(f'filesrc location="{loc}" ! qtdemux ! {parse}appsink name=out sync=false')
    sink = pipe.get_by_name("out")
    pipe.set_state(Gst.State.PLAYING)
    caps, units = None, []
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        caps = caps or sample.get_caps()
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if not ok:
            raise RuntimeError("cannot map a buffer of the file")
        try:
            data = bytes(info.data)
        finally:
            buf.unmap(info)
        units.append((data, buf.pts, buf.dts, buf.duration,
                      not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)))
    bus = pipe.get_bus()
    err = bus.pop_filtered(Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if err is not None:
        raise RuntimeError(f"{path}: {err.parse_error()[0].message}")
    if not units or caps is None or not caps.get_structure(0).get_name() == "video/x-h264":
        raise RuntimeError(f"{path}: no H.264 video track")
    return caps, units


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    """A media per client: appsrc (the file's access units, looped, re-timestamped) ! rtph264pay."""

    def __init__(self, caps: Gst.Caps, units: list, fps_hint: float):
        super().__init__()
        self.caps = caps
        self.units = units
        none = Gst.CLOCK_TIME_NONE
        times = [t for u in units for t in (u[1], u[2]) if t != none]
        pts = [u[1] for u in units if u[1] != none]
        if len(pts) != len(units):
            raise RuntimeError("an access unit of the file has no presentation timestamp")
        step = units[-1][3] if units[-1][3] != none else int(Gst.SECOND / fps_hint)
        self.base = min(times)                  # the earliest time (a DTS before the first PTS with B-frames)
        self.period = max(pts) - min(pts) + step   # one loop of the clip, in ns
        self.set_launch("( appsrc name=src format=time is-live=false do-timestamp=false max-bytes=0 "
                        "! rtph264pay name=pay0 pt=96 )")
        self.connect("media-configure", self._configure)

    def _configure(self, factory, media) -> None:
        src = media.get_element().get_child_by_name("src")
        src.set_property("caps", self.caps)
        state = {"i": 0}
        src.connect("need-data", self._need_data, state)

    def _need_data(self, src, length, state) -> None:
        i = state["i"]
        loop, k = divmod(i, len(self.units))
        data, pts, dts, dur, key = self.units[k]
        shift = loop * self.period - self.base
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = pts + shift
        buf.dts = (dts + shift) if dts != Gst.CLOCK_TIME_NONE else Gst.CLOCK_TIME_NONE
        buf.duration = dur
        if not key:
            buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
        state["i"] = i + 1
        src.emit("push-buffer", buf)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", required=True, help="an MP4 file with an H.264 video track")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (the READY line says which)")
    ap.add_argument("--mount", default="/cam")
    ap.add_argument("--user", default=None, help="basic authentication (with --password)")
    ap.add_argument("--password", default=None)
    ap.add_argument("--fps", type=float, default=15.0, help="frame rate assumed when the file gives no duration")
    ap.add_argument("--no-parser", action="store_true", help="do not use h264parse even when it is installed")
    a = ap.parse_args(argv)
    if (a.user is None) != (a.password is None):
        ap.error("--user and --password go together")
    if not a.mount.startswith("/"):
        ap.error("--mount must start with /")
    Gst.init(None)
    use_parser = not a.no_parser and Gst.ElementFactory.find("h264parse") is not None
    caps, units = load_access_units(a.file, use_parser)
    factory = LoopingFactory(caps, units, a.fps)
    factory.set_shared(False)
    server = GstRtspServer.RTSPServer()
    server.set_address(a.host)
    server.set_service(str(a.port))
    if a.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", a.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        server.set_auth(auth)
        factory.add_role_from_structure(Gst.Structure.from_string(
            f"{a.user}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
    server.get_mount_points().add_factory(a.mount, factory)
    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"cannot listen on {a.host}:{a.port}", file=sys.stderr, flush=True)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY rtsp://{a.host}:{server.get_bound_port()}{a.mount} units={len(units)} "
          f"parser={'h264parse' if use_parser else 'none'}", flush=True)
    loop.run()
    server.get_mount_points().remove_factory(a.mount)
    return 0


if __name__ == "__main__":
    sys.exit(main())
