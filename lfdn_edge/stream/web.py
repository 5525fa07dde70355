"""The stream's HTTP server (``lfdn-edge stream --http HOST:PORT``, ``lfdn_edge.stream.open(..., http=...)``):
stdlib http.server in threads, started and stopped with the stream.

Endpoints (docs/STREAMS.md "HTTP preview and metrics"):

* ``/`` the preview page: per camera the newest frame (a JPEG snapshot reloaded by the page), a score plot
  (inline SVG: the scores, the alert on-threshold, OOD frames in red) and counters; the recent events;
* ``/metrics``: Prometheus text exposition format 0.0.4 (lfdn_edge.stream.metrics);
* ``/api/state``: the page's JSON (per camera status, counts, fps, the last scores; the recent events);
* ``/snapshot/<camera>.jpg``: the newest frame as a JPEG (404 before the first frame);
* ``/stream/<camera>.mjpg``: MJPEG (multipart/x-mixed-replace), one part per new frame, for as long as the
  stream runs (a browser's <img>, VLC, ffplay);
* ``/healthz``: ``ok``.

The server binds when the stream starts and is closed with it: the listening socket closed (the port free),
open connections shut down and every connection thread joined.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
from typing import Any, Optional, Union
from urllib.parse import unquote, urlsplit

from .metrics import CONTENT_TYPE, StreamMonitor

log = logging.getLogger("lfdn_edge.stream")
JOIN_TIMEOUT_S = 5.0
BOUNDARY = "lfdnframe"


def parse_address(address: Union[str, int, tuple]) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1), ``[v6]:PORT``, or (host, port); port 0 = any free."""
    if isinstance(address, tuple):
        host, port = address
    elif isinstance(address, int):
        host, port = "127.0.0.1", address
    else:
        text = str(address).strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest.lstrip(":")
        elif ":" in text:
            host, _, port = text.rpartition(":")
        else:
            host, port = "", text
        host = host or "127.0.0.1"
    try:
        p = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"--http {address!r}: expected HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8080)") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"--http {address!r}: port {p} out of range 0..65535")
    return str(host), p


class _Server(http.server.HTTPServer):
    """HTTPServer with one thread per connection, each tracked so that close() can end and join them all."""

    def __init__(self, address: tuple[str, int], handler: Any, preview: PreviewServer):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.preview = preview
        self._conns: set = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._handle, args=(request, client_address), name="lfdn-stream-http-conn",
                             daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            self._conns.add(request)
        t.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:   # a client that went away mid-response; nothing to tell it
            log.debug("http: request from %s failed", client_address, exc_info=True)
        finally:
            with self._lock:
                self._conns.discard(request)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("http: request from %s failed", client_address, exc_info=True)

    def close_connections(self, timeout: float) -> None:
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(timeout)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"      # one request per connection: no idle keep-alive threads
    timeout = 10.0                     # a client that connects and sends nothing

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 (BaseHTTPRequestHandler's name)
        log.debug("http: %s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:   # noqa: N802 (http.server's naming)
        self.do_GET()

    def do_GET(self) -> None:   # noqa: N802
        p = self.server.preview
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", PAGE.encode("utf-8"))
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE, p.monitor.metrics().encode("utf-8"))
        elif path == "/api/state":
            body = json.dumps(p.monitor.state(), separators=(",", ":"), allow_nan=False)
            self._send(200, "application/json", body.encode("utf-8"))
        elif path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n")
        elif path.startswith("/snapshot/") and path.endswith(".jpg"):
            got = p.monitor.jpeg(path[len("/snapshot/"):-len(".jpg")])
            if got is None:
                self._send(404, "text/plain; charset=utf-8", b"no such camera, or no frame yet\n")
            else:
                self._send(200, "image/jpeg", got[0], {"X-Frame": str(got[1])})
        elif path.startswith("/stream/") and path.endswith(".mjpg"):
            self._mjpeg(path[len("/stream/"):-len(".mjpg")])
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, code: int, ctype: str, body: bytes, headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _mjpeg(self, camera: str) -> None:
        p = self.server.preview
        if camera not in p.monitor.cams:
            self._send(404, "text/plain; charset=utf-8", b"no such camera\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command == "HEAD":
            return
        seq = -1
        while not p.closing.is_set():
            got = p.monitor.jpeg(camera)
            if got is not None and got[2] != seq:
                data, index, seq = got
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                                 f"X-Frame: {index}\r\n\r\n".encode("ascii") + data + b"\r\n")
                self.wfile.flush()
            p.monitor.wait_frame(camera, seq, 0.25)


class PreviewServer:
    """The HTTP server of a stream: :meth:`start` binds and serves in a thread, :meth:`close` stops it."""

    def __init__(self, address: Union[str, int, tuple], monitor: StreamMonitor):
        self.requested = parse_address(address)
        self.monitor = monitor
        self.closing = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (the real port when 0 was asked for)."""
        if self._server is None:
            return self.requested
        return self.requested[0], int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.address
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._server = _Server(self.requested, _Handler, self)
        except OSError as exc:
            raise OSError(f"--http {self.requested[0]}:{self.requested[1]}: cannot listen: {exc}") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="lfdn-stream-http", daemon=True)
        self._thread.start()
        log.info("preview and metrics on %s (metrics: %smetrics)", self.url, self.url)

    def close(self) -> None:
        """Stop serving, end open connections (an MJPEG client too), join every thread, free the port."""
        if self._server is None:
            return
        self.closing.set()
        with self.monitor.lock:
            self.monitor.lock.notify_all()
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
        self._server.close_connections(JOIN_TIMEOUT_S)
        self._server.server_close()
        self._server = None


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lfdn-edge stream</title>
<style>
body{font-family:sans-serif;margin:12px;background:#f4f4f4;color:#222}
h1{font-size:18px;margin:0 0 8px}
#cams{display:flex;flex-wrap:wrap;gap:12px}
.cam{background:#fff;border:1px solid #ccc;border-radius:6px;padding:8px;width:440px}
.cam h2{font-size:15px;margin:0 0 4px}
.cam img{width:100%;max-height:300px;object-fit:contain;background:#000;display:block}
.st{font-size:12px;color:#555;margin:4px 0}
.ood{color:#c00;font-weight:bold}
svg.plot{width:100%;height:120px;background:#fafafa;border:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;background:#fff;margin-top:10px}
td,th{border:1px solid #ccc;padding:2px 6px}
</style></head><body>
<h1>lfdn-edge stream <span id="info" class="st"></span></h1>
<div id="cams"></div>
<h2 style="font-size:15px">Recent events</h2>
<table id="events"><thead><tr><th>event</th><th>camera</th><th>id</th><th>frame</th><th>score</th>
<th>peak score</th><th>peak frame</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const W = 420, H = 120;
function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || tag === "polyline" || tag === "line" || tag === "circle"
    || tag === "text" ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(x, d) { return x === null || x === undefined ? "-" : Number(x).toFixed(d === undefined ? 3 : d); }
function card(name) {
  let c = document.getElementById("cam-" + name);
  if (c) return c;
  c = el("div", {"class": "cam", "id": "cam-" + name, "data-camera": name});
  c.appendChild(el("h2", {"class": "name"}, name));
  const img = el("img", {"class": "frame", "alt": "camera " + name});
  img.onload = () => img.setAttribute("data-size", img.naturalWidth + "x" + img.naturalHeight);
  c.appendChild(img);
  c.appendChild(el("div", {"class": "st"}));
  c.appendChild(el("svg", {"class": "plot", "viewBox": "0 0 " + W + " " + H, "preserveAspectRatio": "none",
                           "data-camera": name}));
  document.getElementById("cams").appendChild(c);
  return c;
}
function plot(svg, cam) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const pts = cam.points.filter(p => p[2] !== null);
  if (!pts.length) return;
  let lo = Math.min(...pts.map(p => p[2])), hi = Math.max(...pts.map(p => p[2]));
  if (cam.threshold !== null) { lo = Math.min(lo, cam.threshold); hi = Math.max(hi, cam.threshold); }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const f0 = cam.points[0][0], f1 = Math.max(cam.points[cam.points.length - 1][0], f0 + 1);
  const x = f => (f - f0) / (f1 - f0) * (W - 4) + 2, y = s => H - 2 - (s - lo) / (hi - lo) * (H - 4);
  if (cam.threshold !== null)
    svg.appendChild(el("line", {"class": "threshold", "x1": 0, "x2": W, "y1": y(cam.threshold),
                                "y2": y(cam.threshold), "stroke": "#e80", "stroke-dasharray": "4 3"}));
  svg.appendChild(el("polyline", {"class": "scores", "fill": "none", "stroke": "#1565c0", "stroke-width": 1.5,
                                  "points": pts.map(p => x(p[0]).toFixed(1) + "," + y(p[2]).toFixed(1)).join(" ")}));
  for (const p of pts) if (p[3])
    svg.appendChild(el("circle", {"class": "ood", "cx": x(p[0]), "cy": y(p[2]), "r": 2, "fill": "#c00"}));
  svg.appendChild(el("text", {"x": 4, "y": 12, "font-size": 10, "fill": "#555"}, "score " + fmt(hi - pad)));
  svg.appendChild(el("text", {"x": 4, "y": H - 4, "font-size": 10, "fill": "#555"}, fmt(lo + pad)));
}
function update(s) {
  document.getElementById("info").textContent = (s.ended ? "ended" : "running") + ", up " + fmt(s.uptime_s, 0) + " s";
  for (const name in s.cameras) {
    const cam = s.cameras[name], c = card(name), last = cam.last || {};
    const img = c.querySelector("img.frame");
    if (cam.image_frame !== null && img.getAttribute("data-frame") !== String(cam.image_frame)) {
      img.setAttribute("data-frame", String(cam.image_frame));
      img.src = "snapshot/" + encodeURIComponent(name) + ".jpg?f=" + cam.image_frame;
    }
    const st = c.querySelector(".st");
    st.textContent = cam.status + " | frame " + (last.frame === undefined ? "-" : last.frame) + " score " +
      fmt(last.score) + " (threshold " + fmt(cam.threshold) + ") | " + fmt(cam.fps, 1) + " fps | scored " +
      cam.scored + ", OOD " + cam.ood + ", events " + cam.events + ", dropped " +
      Object.values(cam.dropped).reduce((a, b) => a + b, 0) + ", reconnects " + cam.reconnects;
    st.className = "st" + (cam.event_active ? " ood" : "");
    plot(c.querySelector("svg.plot"), cam);
  }
  const tb = document.querySelector("#events tbody");
  while (tb.firstChild) tb.removeChild(tb.firstChild);
  for (const e of s.events) {
    const tr = el("tr", {"class": "event", "data-camera": e.camera, "data-event": e.event});
    for (const v of [e.event, e.camera, e.id, e.frame, fmt(e.score), fmt(e.peak_score), e.peak_frame])
      tr.appendChild(el("td", {}, String(v)));
    tb.appendChild(tr);
  }
}
async function poll() {
  try {
    const r = await fetch("api/state", {cache: "no-store"});
    update(await r.json());
  } catch (e) {
    document.getElementById("info").textContent = "stream not reachable";
  }
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""
