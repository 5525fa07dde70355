"""The stream's HTTP server (lfdn_edge.stream.web, lfdn_edge.stream.metrics) with a real (small) trained checkpoint
and test:// sources: /metrics parsed by the exposition-format parser below and checked against the records the
stream yielded, /api/state, the JPEG snapshot and the MJPEG stream decoded, the preview page rendered by a real
headless Chromium (DOM and screenshot), ``lfdn-edge stream --http``, and the server's end with the stream (no
thread left, the port free).

The page test needs Chromium (Debian: ``apt-get install chromium``); it is skipped without it, unless
$LFDN_EDGE_REQUIRE_TOOLCHAINS (set by .ci/run) names ``chromium``: then it fails. With
LFDN_EDGE_UPDATE_SCREENSHOTS=1 it also writes its screenshot to docs/images/stream-preview.png.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lfdn_edge.stream as ls
from lfdn_edge.stream.synthetic import SyntheticConfig, render
from lfdn_edge.stream.web import parse_address
from stream_common import train_scene_model

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}
SIZE = (96, 72)
PAGE_SIZE = (320, 240)


def stream_threads():
    return [t for t in threading.enumerate() if t.name.startswith("lfdn-stream-")]


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert stream_threads() == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, alert on-threshold): a small LFDN on Lite0 (64 px) features of the test:// scene's normal
    frames (96x72 and 320x240); on = the held-out calibration scores' mean + 6 standard deviations (tests/test_stream_pipeline.py)."""
    frames = [np.stack([render(SyntheticConfig(size=size, seed=seed), k) for k in range(0, 240, 3)])
              for size, seed in ((SIZE, 11), (PAGE_SIZE, 12))]  # the page test's cameras are larger
    path, cal = train_scene_model(frames, tmp_path_factory.mktemp("stream-http"), 120)
    return path, float(cal.mean() + 6.0 * cal.std())


@pytest.fixture(scope="module")
def scorer(trained):
    from lfdn_edge.runtime.scorer import Scorer

    return Scorer(trained[0])


@pytest.fixture(scope="module")
def on(trained):
    return trained[1]


# ----------------------------------------------------------------------------------------------- exposition format
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_exposition(text):
    """Prometheus text format 0.0.4 -> {family: {"help", "type", "samples": [(name, labels, value)]}}. Strict:
    every sample belongs to a family announced by HELP and TYPE before it (histogram samples by their _bucket /
    _sum / _count suffix), label values unescaped, values parsed as floats (NaN, +Inf allowed)."""
    fams: dict = {}
    assert text.endswith("\n"), "the exposition ends with a newline"
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            fams.setdefault(name, {"samples": []})["help"] = help_text
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert "help" in fams.get(name, {}), f"TYPE before HELP: {line}"
            fams[name]["type"] = kind
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels_text, value = m.group(1), m.group(3) or "", m.group(4)
        labels, pos = {}, 0
        while pos < len(labels_text):
            lm = LABEL.match(labels_text, pos)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = re.sub(r'\\(.)', lambda x: {"n": "\n"}.get(x.group(1), x.group(1)), lm.group(2))
            pos = lm.end()
        fam = name
        if name not in fams:
            for suf in ("_bucket", "_sum", "_count"):
                if name.endswith(suf) and fams.get(name[:-len(suf)], {}).get("type") in ("histogram", "summary"):
                    fam = name[:-len(suf)]
        assert fam in fams and "type" in fams[fam], f"sample without HELP/TYPE: {line}"
        if fams[fam]["type"] == "counter":
            assert name.endswith("_total"), name
        fams[fam]["samples"].append((name, labels, float(value)))
    return fams


def value(fams, family, name=None, **labels):
    got = [v for n, lab, v in fams[family]["samples"]
           if n == (name or family) and all(lab.get(k) == str(x) for k, x in labels.items())]
    assert len(got) == 1, (family, name, labels, got)
    return got[0]


def get(url, path):
    c = http.client.HTTPConnection(url.split("//")[1].rstrip("/"), timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def scrape(url):
    status, headers, body = get(url, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_exposition(body.decode("utf-8"))


def port_is_free(port):
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the server still accepts connections"
    with socket.socket() as s:   # and it can be listened on again (as any server does: SO_REUSEADDR)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
    return True


def check_families(fams, cameras):
    for name, f in fams.items():
        assert f.get("help") and f.get("type"), name
        assert name.startswith("lfdn_stream_"), name
        assert f["samples"], f"{name}: no samples"
        assert {lab.get("camera") for _, lab, _ in f["samples"]} == set(cameras), name   # every sample a camera
    for cam in cameras:   # histogram: cumulative buckets, +Inf = count
        b = [(float(lab["le"]), v) for n, lab, v in fams["lfdn_stream_latency_seconds"]["samples"]
             if n.endswith("_bucket") and lab["camera"] == cam]
        assert [le for le, _ in b] == sorted(le for le, _ in b) and b[-1][0] == math.inf
        assert all(v1 <= v2 for (_, v1), (_, v2) in zip(b, b[1:]))
        assert b[-1][1] == value(fams, "lfdn_stream_latency_seconds", "lfdn_stream_latency_seconds_count", camera=cam)


def counters(fams):
    return {(n, tuple(sorted(lab.items()))): v for name, f in fams.items() if f["type"] in ("counter", "histogram")
            for n, lab, v in f["samples"] if not n.endswith("_sum")}


# ----------------------------------------------------------------------------------------------- tests
def test_metrics_and_state_match_the_records(scorer, on):
    uris = [f"test://pattern?live=0&size={SIZE[0]}x{SIZE[1]}&frames=40&seed=3&anomaly=10-18&fault=black:26-28"
            "&name=door",
            f"test://pattern?live=0&size={SIZE[0]}x{SIZE[1]}&frames=30&seed=4&fault=error:12-13&name=yard"]
    recs, mid, final, state = [], None, None, None
    with ls.open(uris, scorer, alerts=ls.AlertConfig(on=on, hold=0.1), backoff=ls.Backoff(0.05, 0.1),
                 http="127.0.0.1:0") as s:
        url = s.http.url
        port = s.http.address[1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and port > 0
        for rec in s:
            recs.append(rec)
            n = sum(isinstance(r, ls.Result) for r in recs)
            if mid is None and n >= 20:
                mid, mid_recs = scrape(url), list(recs)
            if isinstance(rec, ls.Summary):   # the server runs until the summary has been taken
                final = scrape(url)
                status, headers, body = get(url, "/api/state")
                assert status == 200 and headers["Content-Type"] == "application/json"
                state = json.loads(body)
    assert port_is_free(port)
    summary = recs[-1].cameras
    check_families(mid, ["door", "yard"])
    check_families(final, ["door", "yard"])
    a, b = counters(mid), counters(final)
    assert a.keys() == b.keys() and all(b[k] >= a[k] for k in a), "a counter went down"
    for fams, seen in ((mid, mid_recs), (final, recs)):
        for cam in ("door", "yard"):
            res = [r for r in seen if isinstance(r, ls.Result) and r.camera == cam]
            for h in ("ok", "black", "frozen", "undecodable"):
                assert value(fams, "lfdn_stream_frames_total", camera=cam, health=h) == sum(r.health == h for r in res)
            assert value(fams, "lfdn_stream_frames_scored_total", camera=cam) == sum(r.score is not None for r in res)
            assert value(fams, "lfdn_stream_ood_frames_total", camera=cam) == sum(bool(r.is_ood) for r in res)
            assert value(fams, "lfdn_stream_events_total", camera=cam) == sum(
                isinstance(e, ls.Event) and e.camera == cam and e.kind == "start" for e in seen)
            lat = [r.latency_s for r in res]
            assert value(fams, "lfdn_stream_latency_seconds", "lfdn_stream_latency_seconds_count", camera=cam) == len(lat)
            assert value(fams, "lfdn_stream_latency_seconds", "lfdn_stream_latency_seconds_sum",
                         camera=cam) == pytest.approx(sum(lat), abs=1e-9)
            assert value(fams, "lfdn_stream_latency_seconds", "lfdn_stream_latency_seconds_bucket", camera=cam,
                         le="0.5") == sum(x <= 0.5 for x in lat)
            scored = [r for r in res if r.score is not None]
            assert value(fams, "lfdn_stream_score", camera=cam) == pytest.approx(scored[-1].score)
            assert value(fams, "lfdn_stream_threshold", camera=cam) == pytest.approx(on)
            assert value(fams, "lfdn_stream_fps", camera=cam) > 0
    for cam in ("door", "yard"):
        assert value(final, "lfdn_stream_reconnects_total", camera=cam) == summary[cam]["reconnects"]
        for reason in ("late", "fps"):
            assert value(final, "lfdn_stream_frames_dropped_total", camera=cam, reason=reason) == \
                summary[cam]["dropped"][reason]
        assert value(final, "lfdn_stream_camera_status", camera=cam, status="ended") == 1
        assert sum(v for n, lab, v in final["lfdn_stream_camera_status"]["samples"] if lab["camera"] == cam) == 1
        assert value(final, "lfdn_stream_events_total", camera=cam) == summary[cam]["events"]
        assert value(final, "lfdn_stream_event_active", camera=cam) == 0
    assert summary["yard"]["reconnects"] == 1 and summary["door"]["events"] == 1
    assert value(final, "lfdn_stream_reconnects_total", camera="yard") == 1
    assert value(final, "lfdn_stream_frames_total", camera="door", health="black") == 3
    assert value(final, "lfdn_stream_camera_info", camera="door", uri=summary["door"]["uri"]) == 1
    # /api/state: the same numbers, the score history, the events newest first
    assert state["schema"] == "lfdn-edge.stream-state/1" and state["ended"] is True
    assert set(state["cameras"]) == {"door", "yard"}
    for cam, c in state["cameras"].items():
        res = [r for r in recs if isinstance(r, ls.Result) and r.camera == cam]
        for k in ("frames", "scored", "ood", "events", "dropped", "reconnects"):
            assert c[k] == summary[cam][k], (cam, k)
        assert c["status"] == "ended" and c["threshold"] == pytest.approx(on)
        assert [p[0] for p in c["points"]] == [r.frame for r in res]
        assert [p[2] for p in c["points"]] == [None if r.score is None else pytest.approx(r.score) for r in res]
        assert c["last"]["frame"] == res[-1].frame and c["image_frame"] == res[-1].frame
    evs = [ls.to_dict(e) for e in recs if isinstance(e, ls.Event)]
    assert [(e["event"], e["id"], e["frame"]) for e in state["events"]] == \
        [(e["event"], e["id"], e["frame"]) for e in reversed(evs)]
    assert state["events"][-1]["event"] == "start" and state["events"][-1]["camera"] == "door"


class SlowScorer:
    """The real scorer, 0.1 s slower per call: a live camera loses frames."""

    def __init__(self, s):
        self._s = s

    def __getattr__(self, k):
        return getattr(self._s, k)

    def score(self, x):
        time.sleep(0.1)
        return self._s.score(x)


def test_dropped_frames_and_reconnects_of_live_sources_redacted(scorer):
    av = pytest.importorskip("av", reason="PyAV (the [stream] extra) opens the RTSP source")
    del av
    with socket.socket() as s:     # a port nothing listens on: the RTSP camera is refused and reconnects
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    uris = [f"test://pattern?size={SIZE[0]}x{SIZE[1]}&fps=40&name=live",
            f"rtsp://admin:s3cret@127.0.0.1:{dead_port}/s1?name=gate"]
    with ls.open(uris, SlowScorer(scorer), duration=1.2, backoff=ls.Backoff(0.05, 0.1), http=("127.0.0.1", 0)) as s:
        url = s.http.url
        for rec in s:
            if isinstance(rec, ls.Summary):
                final = scrape(url)
                text = get(url, "/metrics")[2].decode("utf-8") + get(url, "/api/state")[2].decode("utf-8")
                summary = rec.cameras
    check_families(final, ["live", "gate"])
    assert "s3cret" not in text and "***" in text
    assert summary["live"]["dropped"]["late"] > 3
    for cam in ("live", "gate"):
        for reason in ("late", "fps"):
            assert value(final, "lfdn_stream_frames_dropped_total", camera=cam, reason=reason) == \
                summary[cam]["dropped"][reason]
        assert value(final, "lfdn_stream_reconnects_total", camera=cam) == summary[cam]["reconnects"]
    assert summary["gate"]["reconnects"] >= 2
    assert value(final, "lfdn_stream_frames_total", camera="gate", health="ok") == 0
    assert math.isnan(value(final, "lfdn_stream_score", camera="gate"))
    assert 2 < value(final, "lfdn_stream_fps", camera="live") < 15    # 0.1 s or more per call


def read_mjpeg(url, cam, parts, out):
    """Read parts of /stream/<cam>.mjpg until the server ends the connection; out: headers, parts, eof."""
    c = http.client.HTTPConnection(url.split("//")[1].rstrip("/"), timeout=10)
    c.request("GET", f"/stream/{cam}.mjpg")
    r = c.getresponse()
    out["status"], out["type"] = r.status, r.getheader("Content-Type")
    boundary = out["type"].split("boundary=")[1].encode()
    try:
        while True:
            line = r.fp.readline()
            if not line:
                out["eof"] = True
                return
            if line.strip() != b"--" + boundary:
                continue
            head = {}
            while True:
                h = r.fp.readline().strip()
                if not h:
                    break
                k, _, v = h.decode().partition(":")
                head[k.strip().lower()] = v.strip()
            data = r.fp.read(int(head["content-length"]))
            parts.append((int(head["x-frame"]), head["content-type"], data))
    finally:
        c.close()


def test_snapshot_and_mjpeg_give_jpegs_of_the_frame_size(scorer):
    from PIL import Image

    size = (160, 120)
    uri = f"test://pattern?live=0&fps=40&size={size[0]}x{size[1]}&frames=50&name=cam"
    parts, mj = [], {}
    with ls.open([uri], scorer, http="127.0.0.1:0") as s:
        url, port = s.http.url, s.http.address[1]
        assert get(url, "/snapshot/cam.jpg")[0] == 404            # no frame yet
        it = iter(s)
        first = next(r for r in it if isinstance(r, ls.Result))
        status, headers, jpg = get(url, "/snapshot/cam.jpg")
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and int(headers["X-Frame"]) == first.frame
        assert jpg[:3] == b"\xff\xd8\xff" and jpg[-2:] == b"\xff\xd9"
        img = Image.open(io.BytesIO(jpg))
        assert img.format == "JPEG" and img.size == size and img.mode == "RGB"
        assert get(url, "/snapshot/nope.jpg")[0] == 404 and get(url, "/stream/nope.mjpg")[0] == 404
        assert get(url, "/healthz")[2] == b"ok\n" and get(url, "/nothing")[0] == 404
        reader = threading.Thread(target=read_mjpeg, args=(url, "cam", parts, mj), name="test-mjpeg")
        reader.start()
        deadline = time.monotonic() + 5
        while not parts and time.monotonic() < deadline:   # the first part: the current frame
            time.sleep(0.01)
        frames = [r.frame for r in it if isinstance(r, ls.Result)]   # the rest of the stream (live=0 at 40 fps)
    reader.join(10)
    assert not reader.is_alive() and mj.get("eof"), "the MJPEG connection was not ended with the stream"
    assert mj["status"] == 200 and mj["type"] == "multipart/x-mixed-replace; boundary=lfdnframe"
    assert len(parts) >= 5, len(parts)
    idx = [p[0] for p in parts]
    assert idx == sorted(set(idx)) and set(idx) <= {first.frame, *frames}   # new frames only, in order
    for _, ctype, data in parts:
        im = Image.open(io.BytesIO(data))
        im.load()
        assert ctype == "image/jpeg" and im.format == "JPEG" and im.size == size
    assert port_is_free(port)


def test_the_port_in_use_fails_before_any_reader_starts(scorer):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        s = ls.open(["test://pattern?live=0&frames=5&size=96x72"], scorer, http=busy.getsockname())
        with pytest.raises(OSError, match="cannot listen"):
            s.start()
        assert not any(r.thread.is_alive() for r in s.readers.values())
        s.close()
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_address(":9100") == ("127.0.0.1", 9100) and parse_address("9100") == ("127.0.0.1", 9100)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("host:", "host:http", "1:70000"):
        with pytest.raises(ValueError, match="HOST:PORT|out of range"):
            parse_address(bad)


# ----------------------------------------------------------------------------------------------- the page
@pytest.fixture
def chromium_binary():
    """Chromium's path; a skip (or with "chromium" in LFDN_EDGE_REQUIRE_TOOLCHAINS a failure) without it."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    why = "Chromium is not installed (Debian: apt-get install -y --no-install-recommends chromium)"
    if "chromium" in REQUIRED:
        pytest.fail(why + " -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS")
    pytest.skip(why)


def chromium(binary, tmp_path, url, *args, timeout=120):
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=4000",
           *args, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_preview_page_in_headless_chromium(chromium_binary, scorer, on, tmp_path):
    binary = chromium_binary
    uris = ["test://pattern?live=0&fps=15&size=320x240&frames=90&seed=3&anomaly=25-40&name=door",
            "test://pattern?live=0&fps=15&size=320x240&frames=90&seed=4&name=yard"]
    dom = png = None
    window = (1000, 760)
    with ls.open(uris, scorer, alerts=ls.AlertConfig(on=on, hold=0.2), http="127.0.0.1:0") as s:
        url = s.http.url
        recs = []
        for rec in s:
            recs.append(rec)
            ended = any(isinstance(e, ls.Event) and e.kind == "end" for e in recs)
            if dom is None and ended and sum(isinstance(r, ls.Result) and r.camera == "door" for r in recs) >= 60:
                # the stream waits here (it scores in this thread); the server goes on answering
                dom = chromium(binary, tmp_path, url, "--dump-dom")
                chromium(binary, tmp_path, url, f"--screenshot={tmp_path / 'preview.png'}",
                         f"--window-size={window[0]},{window[1]}")
                png = (tmp_path / "preview.png").read_bytes()
                seen = list(recs)
    assert dom is not None, "the event never ended"
    for cam in ("door", "yard"):
        assert f'id="cam-{cam}"' in dom and f'<h2 class="name">{cam}</h2>' in dom
        card = dom.split(f'id="cam-{cam}"')[1].split('class="cam"')[0]
        img = re.search(r'<img [^>]*class="frame"[^>]*>', card).group(0)
        assert f'src="snapshot/{cam}.jpg?f=' in img and 'data-size="320x240"' in img, img   # the JPEG loaded
        pts = re.search(r'<polyline [^>]*class="scores"[^>]*points="([^"]+)"', card).group(1).split()
        n_scored = sum(isinstance(r, ls.Result) and r.camera == cam and r.score is not None for r in seen)
        assert len(pts) == n_scored >= 60, (len(pts), n_scored)
        assert 'class="threshold"' in card
    door = dom.split('id="cam-door"')[1].split('class="cam"')[0]
    n_ood = sum(isinstance(r, ls.Result) and r.camera == "door" and bool(r.is_ood) for r in seen)
    assert door.count('class="ood"') == n_ood > 5             # the anomaly's scores in red
    ev = [e for e in seen if isinstance(e, ls.Event)]
    rows = re.findall(r'<tr class="event" data-camera="(\w+)" data-event="(\w+)">((?:<td>[^<]*</td>)+)</tr>', dom)
    assert [(c, k) for c, k, _ in rows] == [(e.camera, e.kind) for e in reversed(ev)]
    start = next(e for e in ev if e.kind == "start")
    assert rows[-1][2].startswith(f"<td>start</td><td>door</td><td>{start.id}</td><td>{start.frame}</td>")
    assert 25 <= start.frame <= 40
    # the screenshot: the window's size, and not blank (the camera frames, the plots)
    from PIL import Image

    assert png_size(png) == window
    im = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert len(np.unique(im.reshape(-1, 3), axis=0)) > 500
    (tmp_path / "preview.png").write_bytes(png)
    if os.environ.get("LFDN_EDGE_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / "images").mkdir(exist_ok=True)
        (ROOT / "docs" / "images" / "stream-preview.png").write_bytes(png)


def test_stream_command_serves_http_and_frees_the_port(trained, on):
    p = subprocess.Popen([sys.executable, "-m", "lfdn_edge", "stream",
                          "test://pattern?size=96x72&fps=20&anomaly=10-20&name=cam", "--engine", str(trained[0]),
                          "--threshold", repr(on), "--duration", "4", "--events-only", "--http", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        head = []
        for _ in range(50):   # the line that says where (after any warning of the engine's loading)
            head.append(p.stderr.readline())
            m = re.match(r"preview: (http://127\.0\.0\.1:(\d+)/)  metrics: \1metrics$", head[-1].strip())
            if m or not head[-1]:
                break
        assert m, "".join(head)
        url, port = m.group(1), int(m.group(2))
        fams = scrape(url)
        check_families(fams, ["cam"])
        page = get(url, "/")
        assert page[0] == 200 and b"lfdn-edge stream" in page[2] and page[1]["Content-Type"].startswith("text/html")
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[-1]["type"] == "summary" and any(x["type"] == "event" for x in lines)
    assert port_is_free(port)


class BrightScorer:
    """Scorer-like frames engine at 96x72: score = mean brightness / 255 (scene < 0.3, checkerboard ~0.5)."""

    includes_backbone, input_shape, batch_range, threshold, header = True, (1, 72, 96, 3), (1, 8), 0.4, {}

    def score(self, x):
        return np.asarray(x, dtype=np.float32).mean(axis=(1, 2, 3)) / 255.0


def test_an_http_mjpeg_source_carries_frames_and_its_anomaly(tmp_path):
    """A network source carrying frames: stream B reads stream A's MJPEG endpoint (http://.../stream/door.mjpg,
    multipart/x-mixed-replace as IP cameras serve it) through PyAV; B scores about as many frames as A sends,
    at A's size, and raises one event while A's camera shows its injected anomaly (frames 30-50 at 15 fps)."""
    pytest.importorskip("av", reason="PyAV (the [stream] extra) reads the MJPEG stream")
    a = ls.open(["test://pattern?size=96x72&fps=15&frames=90&anomaly=30-50&name=door"], BrightScorer(),
                http="127.0.0.1:0")
    a.start()
    a_results = []
    ta = threading.Thread(target=lambda: a_results.extend(r for r in a if isinstance(r, ls.Result)))
    ta.start()
    try:
        b_recs = []
        with ls.open([f"{a.http.url.rstrip('/')}/stream/door.mjpg?name=relay"], BrightScorer(), duration=5.5,
                     alerts=ls.AlertConfig(on=0.4, hold=0.2), read_timeout=2.0) as b:
            b_recs = list(b)
    finally:
        ta.join(15)
        a.close()
    assert not ta.is_alive()
    res = [r for r in b_recs if isinstance(r, ls.Result) and r.score is not None]
    assert len(res) >= 0.7 * len(a_results) and len(a_results) >= 70, (len(res), len(a_results))
    assert b.readers["relay"].stats.reconnects <= 1           # A's end: the relay's source goes away once
    starts = [r for r in b_recs if isinstance(r, ls.Event) and r.kind == "start"]
    assert len(starts) == 1, starts
    # MJPEG over HTTP has no timestamps (FFmpeg would number the parts at 25 fps): B's pts are the demuxer's wall
    # clock at arrival, so its capture times run at A's rate and never after the receive time
    assert {r.capture_clock for r in res} == {"pts"}
    assert all(r.capture_time <= r.receive_time + 1e-6 for r in res)
    # A's camera runs at 15 fps: the parts received over the span, scored or dropped late before scoring (busy
    # cores), per second
    span = res[-1].capture_time - res[0].capture_time
    rate = (len(res) - 1 + res[-1].dropped - res[0].dropped) / span
    assert 12.0 <= rate <= 16.0, rate
    # the arrival times in microseconds, not FFmpeg's 1/25 s mpjpeg time base (steps of 0.04 / 0.08 s there, and a
    # burst sharing one pts): in order, distinct after the parts read while the stream was probed (their time is
    # FFmpeg's coarse one, moved to the earliest it can stand for), most steps off any 40 ms multiple
    steps = np.diff([r.capture_time for r in res])
    assert np.all(steps >= 0) and np.all(steps[3:] > 0), steps
    off_grid = np.abs(steps / 0.04 - np.round(steps / 0.04)) * 0.04
    assert np.mean(off_grid > 0.002) > 0.5, np.round(steps, 4)
    a_times = {r.frame: r.capture_time for r in a_results}
    # B's event starts when A's frame 30 arrives and before A's frame 50 (B's clock is the arrival time; A's
    # capture times are the test:// source's schedule, session start + k/15 s, which a part reached B 8 ms
    # ahead of once: 0.1 s of slack, less than the 0.2 s two frames take)
    assert a_times[30] - 0.1 <= starts[0].time <= a_times[50] + 0.5, (starts[0].time - a_times[30])


def test_probed_wall_clock_pts_are_told_apart_from_microseconds_for_any_first_time_base():
    """The packets FFmpeg read while probing an HTTP stream carry the wall clock in the stream's first time base:
    1/25 s for MJPEG, 1/90000 for MPEG-TS over HTTP (whose 1.6e14 ticks a fixed threshold on the value took for
    microseconds); the later ones in microseconds."""
    from fractions import Fraction

    from lfdn_edge.stream.decode import in_old_time_base

    now = 1_796_571_308.4
    for tb in (Fraction(1, 25), Fraction(1, 90000), Fraction(1, 1000), Fraction(1, 500_000)):
        old_pts = int(now / tb)
        assert in_old_time_base(old_pts, tb, now), tb
        assert not in_old_time_base(int(now * 1e6), tb, now), tb
