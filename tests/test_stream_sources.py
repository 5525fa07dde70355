"""lfdn_edge.stream without a scorer: URI parsing and credential redaction for every scheme, the decoder choice,
PyAV's open arguments, the GStreamer pipeline strings (no GStreamer here: the strings are the contract), the
test:// generator, the cameras file, health checks, the alert state machine and the JSON lines sink."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest

from lfdn_edge.stream import AlertConfig, HealthConfig, JsonLinesSink, Status, load_config, parse_uri, redact
from lfdn_edge.stream.alerts import AlertTracker
from lfdn_edge.stream.decode import decoder_name, pyav_open_args
from lfdn_edge.stream.gst import csi_pipeline, file_pipeline, pipeline_for, rtsp_pipeline, user_pipeline
from lfdn_edge.stream.health import HealthMonitor
from lfdn_edge.stream.reader import Backoff
from lfdn_edge.stream.synthetic import SyntheticConfig, SyntheticSource, render


@pytest.mark.parametrize("uri,kind,target,live", [
    ("0", "webcam", "/dev/video0", True),
    (2, "webcam", "/dev/video2", True),
    ("v4l2:///dev/video3?size=640x480&fps=30", "v4l2", "/dev/video3", True),
    ("rtsp://cam.local:554/s1", "rtsp", "rtsp://cam.local:554/s1", True),
    ("http://cam.local/video.mjpg?x=1", "http", "http://cam.local/video.mjpg?x=1", True),
    ("https://cam.local/video.mjpg", "http", "https://cam.local/video.mjpg", True),
    ("file:///data/cam.mp4", "file", "/data/cam.mp4", False),
    ("/data/cam.mp4", "file", "/data/cam.mp4", False),
    ("frames/img%04d.png?fps=10", "file", "frames/img%04d.png", False),
    ("csi://1?size=1920x1080&fps=30", "csi", "1", True),
    ("gst://videotestsrc ! video/x-raw,width=64,height=48", "gst", "videotestsrc ! video/x-raw,width=64,height=48",
     True),
    ("test://pattern?fps=15&anomaly=3-5", "test", "pattern", True),
    ("test://pattern?live=0", "test", "pattern", False),
    ("/data/cam.mp4?drop=1", "file", "/data/cam.mp4", True),
])
def test_every_scheme_parses(uri, kind, target, live):
    s = parse_uri(uri)
    assert (s.kind, s.target, s.live) == (kind, target, live)


def test_common_options_and_scheme_options():
    s = parse_uri("rtsp://u:p@h/x?transport=udp&name=door&fps=5&channel=2")
    assert s.name == "door" and s.fps == 5.0 and s.options["transport"] == "udp"
    assert s.target == "rtsp://u:p@h/x?channel=2"   # the server's own query stays in the URL
    assert parse_uri("rtsp://h/x").options["transport"] == "tcp"
    assert parse_uri("frames/*.png").is_sequence and parse_uri("a/img%03d.jpg").is_sequence
    assert not parse_uri("a.mp4").is_sequence


@pytest.mark.parametrize("bad,why", [
    ("", "non-empty"), ("ftp://h/x", "unknown scheme"), ("rtsp://h/x?transport=sctp", "tcp or udp"),
    ("v4l2://video0", "v4l2:///dev/videoN"), ("csi://left", "sensor id"), ("gst://", "needs a pipeline"),
    ("test://pattern?fps=0", "fps"), ("rtsp://", "no host"), ("x.mp4?size=big", "WIDTHxHEIGHT"),
])
def test_malformed_uris_are_clear_errors(bad, why):
    with pytest.raises(ValueError, match=why):
        parse_uri(bad)


@pytest.mark.parametrize("bad,why", [("anomaly=5-2", "A <= B"), ("fault=melt:1-2", "KIND"), ("frames=0", ">= 1"),
                                     ("colour=red", "unknown option")])
def test_bad_test_options(bad, why):
    from lfdn_edge.stream.config import camera

    with pytest.raises(ValueError, match=why):
        camera(f"test://pattern?{bad}")


SECRET_URIS = ["rtsp://admin:hunter2@10.0.0.5:554/s1?transport=udp", "http://admin:hunter2@cam/video.mjpg",
               "https://cam/video.mjpg?token=hunter2", "rtsp://cam/s1?password=hunter2&x=1"]


@pytest.mark.parametrize("uri", SECRET_URIS)
def test_credentials_never_show(uri, caplog):
    s = parse_uri(uri)
    for text in (str(s), repr(s), s.display, redact(uri)):
        assert "hunter2" not in text and "***" in text
    assert "hunter2" in s.target or "hunter2" in s.uri   # what the decoder opens keeps them
    with pytest.raises(ValueError) as ei:
        parse_uri(uri + ("&" if "?" in uri else "?") + "fps=fast")
    assert "hunter2" not in str(ei.value) and "fps" in str(ei.value)


def test_redaction_of_pipelines_and_logs(caplog):
    p = rtsp_pipeline("rtsp://admin:hunter2@10.0.0.5/s1")
    assert "hunter2" in p and "hunter2" not in redact(p)
    assert redact("rtspsrc location=x user-id=bob user-pw=hunter2 ! fakesink") == \
        "rtspsrc location=x user-id=bob user-pw=*** ! fakesink"
    # the reader logs a failing source with its URI redacted (the RTSP port is closed: connection refused)
    from lfdn_edge.stream.reader import Reader

    events = []
    r = Reader(parse_uri("rtsp://admin:hunter2@127.0.0.1:9/s1"), threading.Condition(),
               lambda *a: events.append(a), read_timeout=1.0, backoff=Backoff(0.01, 0.02), retries=1)
    with caplog.at_level(logging.WARNING, logger="lfdn_edge.stream"):
        r.start()
        assert r.join(20)
    assert r.state == "dead" and r.stats.reconnects == 1
    text = caplog.text + json.dumps(events) + r.stats.last_error
    assert "127.0.0.1" in text and "hunter2" not in text


def test_decoder_choice_and_pyav_arguments():
    assert decoder_name(parse_uri("test://pattern")) == "synthetic"
    assert decoder_name(parse_uri("csi://0")) == "gstreamer"
    assert decoder_name(parse_uri("gst://videotestsrc")) == "gstreamer"
    for u in ("rtsp://h/x", "cam.mp4"):
        assert decoder_name(parse_uri(u), jetson=False) == "pyav"
        assert decoder_name(parse_uri(u), jetson=True) == "gstreamer"     # nvv4l2decoder on a Jetson
    assert decoder_name(parse_uri("frames/*.png"), jetson=True) == "pyav"
    assert decoder_name(parse_uri("http://h/v.mjpg"), jetson=True) == "pyav"
    f, kw = pyav_open_args(parse_uri("rtsp://h/x?transport=udp"), read_timeout=2.0)
    assert f == "rtsp://h/x" and kw["options"] == {"rtsp_transport": "udp", "timeout": "2000000"}
    assert kw["timeout"] == (2.0, 2.0)
    f, kw = pyav_open_args(parse_uri("frames/*.png?fps=10"))
    assert kw == {"format": "image2", "options": {"framerate": "10.0", "pattern_type": "glob"}}
    f, kw = pyav_open_args(parse_uri("frames/img%04d.png"))
    assert kw["options"] == {"framerate": "25.0"}
    f, kw = pyav_open_args(parse_uri("http://h/v.mjpg"), read_timeout=3.0)   # live: the demuxer's wall clock
    assert kw == {"options": {"use_wallclock_as_timestamps": "1"}, "timeout": (3.0, 3.0)}
    assert pyav_open_args(parse_uri("http://h/v.mp4?live=0"))[1]["options"] == {}
    f, kw = pyav_open_args(parse_uri("v4l2:///dev/video1?size=640x480&fps=15&input_format=mjpeg"))
    assert f == "/dev/video1" and kw == {"format": "v4l2", "options": {"video_size": "640x480", "framerate": "15",
                                                                       "input_format": "mjpeg"}}


def test_gstreamer_pipeline_strings():
    tail = "videoconvert ! video/x-raw,format=RGB ! appsink name=lfdn_sink max-buffers=2 drop=false sync=false " \
           "emit-signals=false"
    assert csi_pipeline(1, (1920, 1080), 30) == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1 ! nvvidconv "
        "! video/x-raw,format=BGRx ! " + tail)
    assert pipeline_for(parse_uri("csi://1?size=1920x1080&fps=30")) == csi_pipeline(1, (1920, 1080), 30)
    assert rtsp_pipeline("rtsp://h/x", "udp", "h265", 100) == (
        'rtspsrc location="rtsp://h/x" protocols=udp latency=100 ! rtph265depay ! h265parse ! nvv4l2decoder ! '
        "nvvidconv ! video/x-raw,format=BGRx ! " + tail)
    assert pipeline_for(parse_uri("rtsp://h/x?codec=h264")).startswith(
        'rtspsrc location="rtsp://h/x" protocols=tcp latency=200 ! rtph264depay ! h264parse ! nvv4l2decoder')
    assert file_pipeline("/v/a.mp4").startswith('filesrc location="/v/a.mp4" ! qtdemux ! h264parse ! nvv4l2decoder')
    assert "max-buffers=4 drop=false" in file_pipeline("/v/a.mkv") and "matroskademux" in file_pipeline("/v/a.mkv")
    assert user_pipeline("videotestsrc ! video/x-raw,width=64 !") == "videotestsrc ! video/x-raw,width=64 ! " + tail
    own = "videotestsrc ! videoconvert ! appsink name=lfdn_sink"
    assert user_pipeline(own) == own
    with pytest.raises(ValueError, match="h264 and h265"):
        rtsp_pipeline("rtsp://h/x", codec="vp8")


def test_gstreamer_missing_is_a_clear_error():
    from lfdn_edge.stream.gst import import_gst

    try:
        import gi  # noqa: F401
        pytest.skip("PyGObject is installed here")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="python3-gi"):
        import_gst()


def test_synthetic_frames_are_reproducible_and_faults_happen_where_asked():
    spec = parse_uri("test://pattern?live=0&size=64x48&anomaly=3-4&fault=black:6-6,frozen:8-9,corrupt:11-11,"
                     "drop:13-14,error:16-16&frames=20&seed=3")
    cfg = SyntheticConfig.from_spec(spec)
    assert np.array_equal(render(cfg, 5), render(cfg, 5)) and not np.array_equal(render(cfg, 5), render(cfg, 6))
    src = SyntheticSource(spec)
    src.open()
    got = []
    while True:
        try:
            f = src.read()
        except OSError as exc:
            assert "injected connection error at frame 16" in str(exc)
            continue
        if f is None:
            break
        got.append(f)
    idx = [f.index for f in got]
    assert idx == [i for i in range(20) if i not in (13, 14, 16)]      # lost frames are gaps, never invented
    by = {f.index: f for f in got}
    assert by[6].image.mean() < 3 and by[11].image is None and by[11].error
    assert np.array_equal(by[8].image, by[7].image) and np.array_equal(by[9].image, by[7].image)
    assert by[3].image.std() > 60 > by[2].image.std()                    # the checkerboard
    assert [round(by[i].pts, 6) for i in (0, 1)] == [0.0, round(1 / 15, 6)]


def test_health_black_frozen_undecodable():
    m = HealthMonitor(HealthConfig(frozen_frames=3))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert m.check(None) == "undecodable"
    assert [m.check(img) for _ in range(4)] == ["ok", "ok", "frozen", "frozen"]
    assert m.check(np.zeros((48, 64, 3), np.uint8)) == "black"
    assert m.check(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) == "ok"


def test_alerts_one_event_per_incident_with_hysteresis_hold_and_cooldown():
    t = AlertTracker("c", AlertConfig(on=1.0, off=0.5, hold=0.3, cooldown=1.0).resolved(None))
    scores = [0, 0, 2, 3, 0.8, 0.2, 0.9, 2.5, 0.1, 0.1, 0.1, 0.1, 0.1, 2.0, 0.0]   # one frame every 0.1 s
    out = []
    for i, s in enumerate(scores):
        out += [(e.kind, e.frame, e.peak_score) for e in t.update(i * 0.1, i, s)]
    out += [(e.kind, e.frame, e.peak_score) for e in t.close()]
    # 0.8 stays above off (hysteresis), the dip at 0.2 is shorter than the hold; the spike at frame 13 falls in
    # the cooldown after the end at frame 11
    assert out == [("start", 2, 2), ("update", 3, 3), ("end", 11, 3)]
    t2 = AlertTracker("c", AlertConfig(on=1.0, min_frames=2).resolved(None))
    assert [e.kind for i, s in enumerate([2, 0, 2, 2, 2]) for e in t2.update(i, i, s)] == ["start"]
    with pytest.raises(ValueError, match="no alert threshold"):
        AlertConfig().resolved(None)
    with pytest.raises(ValueError, match="on >= off"):
        AlertConfig(on=0.0, off=1.0).resolved(None)


def test_backoff_is_exponential_bounded_and_jittered():
    import random

    b = Backoff(0.5, 4.0, 0.25)
    rng = random.Random(0)
    d = [b.delay(n, rng) for n in range(8)]
    assert all(0.375 <= d[0] <= 0.625 for _ in [0]) and all(3.0 <= x <= 5.0 for x in d[4:])
    assert d[1] > d[0] * 1.1 and len({round(x, 6) for x in d[4:]}) == 4


def test_cameras_file_yaml_and_json(tmp_path):
    text = ("engine: e.pt\ndefaults: {fps: 10, hold: 2}\ncameras:\n"
            "  - uri: rtsp://u:pw@h/x\n    name: door\n    threshold: -0.5\n    off_threshold: -0.6\n"
            "  - uri: test://pattern?fps=5\n")
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    doc = load_config(tmp_path / "c.yaml")
    a, b = doc["cameras"]
    assert doc["engine"] == str(tmp_path / "e.pt")
    assert a.spec.name == "door" and a.spec.fps == 10 and (a.alerts.on, a.alerts.off, a.alerts.hold) == (-0.5, -0.6, 2)
    assert b.spec.fps == 5   # the URI's own fps wins
    (tmp_path / "c.json").write_text(json.dumps({"cameras": [{"uri": "0", "nmae": "x"}]}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown key"):
        load_config(tmp_path / "c.json")
    (tmp_path / "c.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="yaml, .yml or .json"):
        load_config(tmp_path / "c.txt")


def test_json_lines_sink_writes_whole_flushed_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonLinesSink(str(path)) as sink:
        def w(i):
            for k in range(200):
                sink.write(Status(f"c{i}", "connected", 1.0, "x" * (k % 50)))
        ths = [threading.Thread(target=w, args=(i,)) for i in range(4)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        first = path.read_text(encoding="utf-8").splitlines()[0]   # written before close: already on disk
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 800 and json.loads(first)["schema"] == "lfdn-edge.stream/1"
    assert all(json.loads(line)["type"] == "status" for line in lines)
