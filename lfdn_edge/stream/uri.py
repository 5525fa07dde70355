"""Source URIs -> :class:`SourceSpec`: one scheme per kind of camera, credentials kept out of every str and log.

    0, 1, ...                    webcam index (Linux: /dev/video0, ... through v4l2)
    v4l2:///dev/video2           a V4L2 device (?size=640x480&fps=30&input_format=mjpeg)
    rtsp://user:pw@host/path     RTSP (?transport=tcp|udp, default tcp); rtsps:// too
    http(s)://host/stream.mjpg   HTTP(S) MJPEG (multipart) or any stream FFmpeg reads over HTTP
    file:///x.mp4, x.mp4         a video file; x/*.png or x/img%04d.png: an image sequence (?fps=, default 25)
    csi://0                      a Jetson CSI camera (nvarguscamerasrc sensor-id=0; ?size=&fps=)
    gst://<pipeline>             a GStreamer pipeline that ends in raw video (an appsink is appended)
    test://pattern?...           a synthetic source shipped with the package (lfdn_edge.stream.synthetic)

Query parameters common to every scheme (taken out of the URI before it is opened): ``name`` (the camera's
name in results; default cam0, cam1, ...), ``fps`` (target fps: a live source is thinned to it, a file is paced
at it), ``live`` (1/0: keep only the newest frame vs. never drop; default 1 for cameras and streams, 0 for files
and image sequences), ``drop`` (1: a file source drops frames too, like a live one). Every other parameter
belongs to the scheme: ``transport`` (tcp/udp), ``codec`` (h264/h265, for the Jetson pipeline), ``latency``
(ms, Jetson) and ``decoder`` (pyav/gstreamer) for RTSP; ``format`` and ``decoder`` for HTTP (any other query
parameter of an rtsp:// or http(s):// URI is the server's and stays in the URL); ``size``, ``input_format``
for V4L2; ``codec`` for files on a Jetson; the test:// options (lfdn_edge.stream.synthetic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

SCHEMES = ("webcam", "v4l2", "rtsp", "http", "file", "csi", "gst", "test")
LIVE_KINDS = ("webcam", "v4l2", "rtsp", "http", "csi", "gst")
COMMON_KEYS = ("name", "fps", "live", "drop")
RTSP_KEYS = ("transport", "codec", "latency", "decoder")   # lfdn-edge's, not the server's (the rest stays in the URL)
HTTP_KEYS = ("format", "decoder")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*)(?::(?P<pw>[^/@\s]*))?@")
_SECRET_KEYS = ("password", "passwd", "pwd", "pass", "token", "key", "secret", "auth", "user-pw", "user_pw")
_SECRET_QS = re.compile(r"(?P<k>(?:[?&;\s]|^)(?:" + "|".join(re.escape(k) for k in _SECRET_KEYS) +
                        r")=)(?P<v>[^&\s;!]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every credential hidden: the password (and user) of ``scheme://user:pw@host`` and
    the value of password/token/key/secret/auth query parameters or GStreamer properties (user-pw=...)."""
    def userinfo(m: re.Match) -> str:
        return f"{m.group('scheme')}***:***@" if m.group("pw") is not None else f"{m.group('scheme')}***@"

    return _SECRET_QS.sub(lambda m: f"{m.group('k')}***", _USERINFO.sub(userinfo, str(text)))


def _truthy(value: str, key: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{key}={value!r}: expected 1/0 (true/false)")


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (width, height)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 640x480")
    return int(m.group(1)), int(m.group(2))


def parse_fps(text: Any, key: str = "fps") -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={text!r}: expected a number of frames per second") from None
    if not v > 0 or v > 10000:
        raise ValueError(f"{key}={text!r}: expected 0 < fps <= 10000")
    return v


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source. ``target`` is what the decoder opens (a path, a device, a URL with its credentials, a
    pipeline); never print it: ``str(spec)`` and ``spec.display`` are redacted."""

    kind: str                      # one of SCHEMES
    target: str                    # path / device / URL / pipeline / test generator name
    name: str = ""                 # camera name ("" = given by position: cam0, cam1, ...)
    fps: Optional[float] = None    # target fps
    live: bool = True              # keep only the newest frame (drop) vs. block (drop nothing)
    options: Mapping[str, str] = field(default_factory=dict)   # scheme options (transport, size, ...)
    uri: str = ""                  # the URI as given (with credentials: never print it)

    @property
    def display(self) -> str:
        """The URI with its credentials hidden (for logs, results and errors)."""
        return redact(self.uri or self.target)

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return (f"SourceSpec(kind={self.kind!r}, uri={self.display!r}, name={self.name!r}, fps={self.fps}, "
                f"live={self.live}, options={ {k: redact(f'{k}={v}').split('=', 1)[1] for k, v in self.options.items()} })")

    @property
    def is_sequence(self) -> bool:
        """An image sequence (a glob or a printf pattern) rather than one video file."""
        return self.kind == "file" and (any(c in self.target for c in "*?[") or re.search(r"%0?\d*d", self.target)
                                        is not None)

    def with_name(self, name: str) -> SourceSpec:
        return SourceSpec(self.kind, self.target, name, self.fps, self.live, dict(self.options), self.uri)


def _split_common(query: list[tuple[str, str]], kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    common: dict[str, Any] = {}
    opts: dict[str, str] = {}
    for k, v in query:
        if k == "name":
            common["name"] = v
        elif k == "fps":
            common["fps"] = parse_fps(v)
        elif k == "live":
            common["live"] = _truthy(v, k)
        elif k == "drop":
            common["drop"] = _truthy(v, k)
        else:
            opts[k] = v
    return common, opts


def _make(kind: str, target: str, uri: str, query: list[tuple[str, str]], default_live: bool) -> SourceSpec:
    common, opts = _split_common(query, kind)
    live = common.get("live", default_live)
    if common.get("drop"):
        live = True
    if "size" in opts:
        parse_size(opts["size"])
    if kind == "rtsp":
        t = opts.setdefault("transport", "tcp").lower()
        if t not in ("tcp", "udp"):
            raise ValueError(f"{redact(uri)}: transport={t!r}: expected tcp or udp")
        opts["transport"] = t
    return SourceSpec(kind, target, common.get("name", ""), common.get("fps"), live, opts, uri)


def parse_uri(uri: Any) -> SourceSpec:
    """One source URI (or an int webcam index) -> SourceSpec. Raises ValueError (redacted) when malformed."""
    if isinstance(uri, SourceSpec):
        return uri
    if isinstance(uri, int) and not isinstance(uri, bool):
        uri = str(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"a source must be a non-empty URI string or a webcam index, got {uri!r}")
    uri = uri.strip()
    if uri.isdigit():
        return SourceSpec("webcam", f"/dev/video{int(uri)}", "", None, True, {"index": uri}, uri)
    low = uri.lower()
    if low.startswith("gst://"):
        body = uri[len("gst://"):].strip()
        if not body:
            raise ValueError("gst:// needs a pipeline, e.g. gst://videotestsrc ! video/x-raw,width=640,height=480")
        return SourceSpec("gst", body, "", None, True, {}, uri)
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", uri)
    if not m:   # a plain path (video file or image sequence)
        path, _, qs = uri.partition("?") if "?" in uri and not _exists(uri) else (uri, "", "")
        return _make("file", path, uri, parse_qsl(qs, keep_blank_values=True), False)
    scheme = m.group(1).lower()
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if scheme == "file":
        path = parts.path if not parts.netloc else f"//{parts.netloc}{parts.path}"
        if not path:
            raise ValueError(f"{redact(uri)}: file:// needs a path, e.g. file:///data/cam.mp4")
        return _make("file", path, uri, query, False)
    if scheme == "v4l2":
        dev = parts.path or parts.netloc
        if not dev.startswith("/dev/"):
            raise ValueError(f"{redact(uri)}: expected v4l2:///dev/videoN")
        return _make("v4l2", dev, uri, query, True)
    if scheme in ("rtsp", "rtsps", "http", "https"):
        if not parts.hostname:
            raise ValueError(f"{redact(uri)}: no host")
        kind = "rtsp" if scheme.startswith("rtsp") else "http"
        common_keys = set(COMMON_KEYS) | set(RTSP_KEYS if kind == "rtsp" else HTTP_KEYS)
        keep = [(k, v) for k, v in query if k not in common_keys]   # the rest belongs to the server's URL
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(f"{k}={quote(v, safe='')}"
                                                                             for k, v in keep), ""))
        spec = _make(kind, target, uri, [(k, v) for k, v in query if k in common_keys], True)
        return spec
    if scheme == "csi":
        sensor = (parts.netloc or parts.path.strip("/")) or "0"
        if not sensor.isdigit():
            raise ValueError(f"{redact(uri)}: expected csi://N with N the sensor id")
        return _make("csi", sensor, uri, query, True)
    if scheme == "test":
        gen = (parts.netloc or parts.path.strip("/")) or "pattern"
        return _make("test", gen, uri, query, True)   # options checked by synthetic.SyntheticConfig
    raise ValueError(f"{redact(uri)}: unknown scheme {scheme!r}; known: a webcam index, v4l2://, rtsp://, "
                     "http(s)://, file:// or a path, csi://, gst://, test://")


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)


def source_names(specs: list[SourceSpec]) -> list[SourceSpec]:
    """Give every unnamed spec a name (cam0, cam1, ... by position); names must be unique."""
    out = [s if s.name else s.with_name(f"cam{i}") for i, s in enumerate(specs)]
    seen: set[str] = set()
    for s in out:
        if s.name in seen:
            raise ValueError(f"two sources are named {s.name!r}; names must be unique (?name=...)")
        seen.add(s.name)
    return out
