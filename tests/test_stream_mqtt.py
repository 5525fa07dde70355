"""The MQTT sink (lfdn_edge.stream.mqtt) against a real broker: Debian's mosquitto, started per test on a free
127.0.0.1 port with a temporary config (anonymous, or a password file), killed in teardown; subscribers are
paho clients. A small trained checkpoint scores test:// cameras (tests/stream_common.py).

Checked: every record of a stream arrives once on its topic (PREFIX/CAMERA/result|event|status, PREFIX/summary)
with the same JSON as the JSON lines sink and the QoS of its kind; the retained birth "online" and the retained
camera status and summary; the last will "offline" when ``lfdn-edge stream --mqtt`` is killed (SIGKILL: at
once; SIGSTOP, a hung process: within 1.5 x keepalive) and "offline" on a clean exit; a broker that is down at
the start or killed mid-run: the stream keeps scoring into the JSON sink, dropped messages are counted, the
queue stays bounded, the client reconnects, nothing hangs; the password never in a log line or output.

Needs mosquitto (Debian: ``apt-get install mosquitto``; the test starts its own broker, never the system's).
Skipped without it, unless $LFDN_EDGE_REQUIRE_TOOLCHAINS names ``mqtt``: then it fails.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lfdn_edge.stream as ls
from lfdn_edge.stream.mqtt import parse_mqtt_url, topic_part
from lfdn_edge.stream.synthetic import SyntheticConfig, render
from stream_common import train_scene_model

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the [stream] extra) is the MQTT client")

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}
SIZE = (96, 72)
USER, SECRET = "edge", "s3cr3t-Pw"


def tool(name):
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)),
                                      None)
    if path is None:
        msg = f"{name} not found (Debian: apt-get install {'openssl' if name == 'openssl' else 'mosquitto'})"
        if "mqtt" in REQUIRED:
            pytest.fail(msg + f" -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS={os.environ['LFDN_EDGE_REQUIRE_TOOLCHAINS']}")
        pytest.skip(msg)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A mosquitto on 127.0.0.1:port (anonymous, or USER/SECRET from a password file); start / kill / restart."""

    def __init__(self, tmp: Path, port: int, auth: bool, tls_port=None):
        self.bin, self.tmp, self.port, self.auth = tool("mosquitto"), tmp, port, auth
        self.proc = None
        lines = [f"listener {port} 127.0.0.1", "persistence false", "user root", "log_dest stderr",
                 "log_type error", "log_type warning"]
        if tls_port is not None:   # a second listener with TLS: a self-signed certificate for 127.0.0.1
            self.cert, key = tmp / "cert.pem", tmp / "key.pem"
            subprocess.run([tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-keyout", str(key), "-out", str(self.cert), "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
            lines += [f"listener {tls_port} 127.0.0.1", f"certfile {self.cert}", f"keyfile {key}"]
        if auth:
            pw = tmp / "passwd"
            subprocess.run([tool("mosquitto_passwd"), "-b", "-c", str(pw), USER, SECRET], check=True,
                           capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self):
        self.proc = subprocess.Popen([self.bin, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.tmp / "broker.log", "ab"))
        t_end = time.monotonic() + 10
        while time.monotonic() < t_end:
            assert self.proc.poll() is None, (self.tmp / "broker.log").read_text(encoding="utf-8", errors="replace")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not listen within 10 s")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker_factory(tmp_path):
    made = []

    def make(auth=False, port=None, start=True, tls_port=None):
        d = tmp_path / f"broker{len(made)}"
        d.mkdir()
        b = Broker(d, port or free_port(), auth, tls_port)
        made.append(b)
        return b.start() if start else b

    yield make
    for b in made:
        b.kill()


@dataclass
class Msg:
    t: float
    topic: str
    payload: str
    qos: int
    retain: bool


class Subscriber:
    """A paho subscriber to PREFIX/# (QoS 2, so a message keeps the QoS it was published with); it reconnects
    and subscribes again when the broker comes back."""

    def __init__(self, port, prefix, auth=False):
        self.msgs: list[Msg] = []
        self.cond = threading.Condition()
        self.prefix = prefix
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        if auth:
            c.username_pw_set(USER, SECRET)
        c.reconnect_delay_set(1, 1)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{prefix}/#", qos=2)
        c.on_subscribe = lambda cl, u, mid, rcs, p: self.subscribed.set()
        c.on_disconnect = lambda cl, u, f, rc, p: self.subscribed.clear()
        c.on_message = self._on_message
        self.client = c
        c.connect_async("127.0.0.1", port, keepalive=5)
        c.loop_start()
        assert self.subscribed.wait(10), "the subscriber did not subscribe within 10 s"

    def _on_message(self, client, userdata, m):
        with self.cond:
            self.msgs.append(Msg(time.monotonic(), m.topic, m.payload.decode("utf-8"), m.qos, bool(m.retain)))
            self.cond.notify_all()

    def on(self, topic):
        with self.cond:
            return [m for m in self.msgs if m.topic == f"{self.prefix}/{topic}"]

    def wait(self, pred, timeout):
        """The first message for which pred(m) holds, waiting up to timeout seconds (None if none came)."""
        t_end = time.monotonic() + timeout
        with self.cond:
            while True:
                hit = next((m for m in self.msgs if pred(m)), None)
                left = t_end - time.monotonic()
                if hit is not None or left <= 0:
                    return hit
                self.cond.wait(left)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers():
    made = []

    def make(*a, **kw):
        s = Subscriber(*a, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def sink_threads():
    """paho's network threads of the sinks under test (the subscribers' are named paho-mqtt-client-sub-...)."""
    return [t for t in threading.enumerate()
            if t.name.startswith("paho-mqtt-client-") and not t.name.startswith("paho-mqtt-client-sub-")]


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert [t for t in threading.enumerate() if t.name.startswith("lfdn-stream-")] == []
    assert sink_threads() == []   # every closed sink stopped its network thread


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, alert on-threshold): a small LFDN on Lite0 (64 px) features of the test:// scene's normal frames;
    on = calibration mean + 6 standard deviations (tests/test_stream_pipeline.py)."""
    frames = np.stack([render(SyntheticConfig(size=SIZE, seed=11), k) for k in range(0, 240, 3)])
    path, cal = train_scene_model([frames], tmp_path_factory.mktemp("stream-mqtt"), 60)
    return path, float(cal.mean() + 6.0 * cal.std())


@pytest.fixture(scope="module")
def scorer(trained):
    from lfdn_edge.runtime.scorer import Scorer

    return Scorer(trained[0])


def url(port, prefix, auth=False, **opts):
    q = "&".join(f"{k}={v}" for k, v in opts.items())
    cred = f"{USER}:{SECRET}@" if auth else ""
    return f"mqtt://{cred}127.0.0.1:{port}/{prefix}" + (f"?{q}" if q else "")


# ----------------------------------------------------------------------------------------------- no broker needed
def test_url_parsing_defaults_options_and_redaction(tmp_path):
    t = parse_mqtt_url("mqtt://u%40x:p%3Aw@broker.local/site/1?client_id=box&keepalive=5&queue=7&result_qos=1")
    assert (t.host, t.port, t.tls, t.prefix, t.username, t.password) == ("broker.local", 1883, False, "site/1", "u@x", "p:w")
    assert (t.client_id, t.keepalive, t.queue, t.qos, t.result_qos) == ("box", 5, 7, 1, 1)
    assert "p:w" not in repr(t) and "p%3Aw" not in repr(t) and "***" in t.display
    d = parse_mqtt_url("mqtts://h")
    assert (d.port, d.tls, d.prefix, d.qos, d.result_qos, d.keepalive, d.queue) == (8883, True, "lfdn-edge", 1, 0, 30, 1000)
    assert d.client_id.startswith("lfdn-edge-") and d.client_id.endswith(str(os.getpid()))
    for bad, msg in (("http://h/x", "mqtt://"), ("mqtt:///x", "no broker host"), ("mqtt://h/a/+/b", "prefix"),
                     ("mqtt://h/x?qos=3", r"qos=3 is out of range"), ("mqtt://h/x?keepalive=z", "not an integer"),
                     ("mqtt://h/x?ca=/etc/hosts", "needs mqtts"), ("mqtt://h/x?retain=1", "unknown option"),
                     (f"mqtts://h/x?ca={tmp_path}/none.pem", "no such file"), ("mqtt://h:99999/x", "bad port")):
        with pytest.raises(ValueError, match=msg):
            parse_mqtt_url(bad.replace("//h", f"//user:{SECRET}@h"))
        try:
            parse_mqtt_url(bad.replace("//h", f"//user:{SECRET}@h"))
        except ValueError as exc:
            assert SECRET not in str(exc)
    assert [topic_part(n) for n in ("door", "a/b", "x+#", "")] == ["door", "a_b", "x__", "_"]


def test_config_file_mqtt_key_one_url_or_a_list(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"mqtt": 5, "cameras": [{"uri": "test://pattern"}]}), encoding="utf-8")
    with pytest.raises(ValueError, match="'mqtt' must be a broker URL"):
        ls.load_config(tmp_path / "c.json")
    (tmp_path / "d.json").write_text(json.dumps({"mqtt": "mqtt://h/p", "cameras": []}), encoding="utf-8")
    assert ls.load_config(tmp_path / "d.json")["mqtt"] == ["mqtt://h/p"]


# ----------------------------------------------------------------------------------------------- with a broker
def test_every_record_arrives_on_its_topic_with_the_json_lines_payload(broker_factory, subscribers, scorer, trained,
                                                                       tmp_path):
    b = broker_factory()
    sub = subscribers(b.port, "site")
    out = tmp_path / "r.jsonl"
    srcs = ["test://pattern?live=0&size=96x72&frames=20&anomaly=5-12&name=door",
            "test://pattern?live=0&size=96x72&frames=12&seed=3&name=yard/east"]
    t0 = time.monotonic()
    with ls.JsonLinesSink(str(out)) as js, ls.MqttSink(url(b.port, "site", client_id="t1")) as ms:
        assert sub.wait(lambda m: m.topic == "site/status" and m.payload == "online", 10) is not None   # birth
        with ls.open(srcs, scorer, alerts=ls.AlertConfig(on=trained[1], hold=0.1)) as s:
            for rec in s:
                js.write(rec)
                ms.write(rec)
        ms.close()   # flushes, then "offline"
        assert ms.stats["dropped"] == 0 and ms.stats["sent"] == ms.stats["written"] and ms.stats["connects"] == 1
    assert sub.wait(lambda m: m.topic == "site/status" and m.payload == "offline", 5) is not None
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert ms.stats["written"] == len(lines) and time.monotonic() - t0 < 60
    got = {}
    for m in sub.msgs:
        got.setdefault(m.topic, []).append(m)
    expected = {}
    for d in lines:
        topic = "site/summary" if d["type"] == "summary" else f"site/{topic_part(d['camera'])}/{d['type']}"
        expected.setdefault(topic, []).append(d)
    assert set(got) == set(expected) | {"site/status"}
    assert "site/yard_east/result" in got and "site/door/event" in got
    for topic, ds in expected.items():   # the same JSON, in order, each exactly once
        assert [json.loads(m.payload) for m in got[topic]] == ds, topic
        assert {json.loads(m.payload)["schema"] for m in got[topic]} == {"lfdn-edge.stream/1"}
        want_qos = 0 if topic.endswith("/result") else 1
        assert {m.qos for m in got[topic]} == {want_qos}, topic
    assert sum(d["type"] == "result" for d in lines) == 32
    ev = [json.loads(m.payload) for m in got["site/door/event"]]
    assert ev[0]["event"] == "start" and ev[-1]["event"] == "end" and 5 <= ev[-1]["peak_frame"] <= 12
    assert [m.payload for m in got["site/status"]] == ["online", "offline"]
    # retained: a new subscriber gets "offline", each camera's last status and the summary at once
    late = subscribers(b.port, "site")
    assert late.wait(lambda m: m.topic == "site/summary", 5) is not None
    time.sleep(0.3)
    ret = {m.topic: m for m in late.msgs}
    assert all(m.retain for m in late.msgs)
    assert set(ret) == {"site/status", "site/summary", "site/door/status", "site/yard_east/status"}
    assert ret["site/status"].payload == "offline"
    assert json.loads(ret["site/summary"].payload) == lines[-1]
    assert json.loads(ret["site/door/status"].payload)["status"] == "ended"


def test_birth_is_retained_while_the_stream_runs(broker_factory, subscribers):
    b = broker_factory()
    with ls.MqttSink(url(b.port, "p", client_id="t2")) as ms:
        late = subscribers(b.port, "p")   # subscribes after the birth: gets it retained
        m = late.wait(lambda m: m.topic == "p/status", 5)
        assert m is not None and (m.payload, m.retain, m.qos) == ("online", True, 1)
        assert ms.connected
    assert late.wait(lambda m: m.topic == "p/status" and m.payload == "offline", 5) is not None
    assert not ms.connected and sink_threads() == []


def stream_cmd(ckpt, mqtt_url, *extra, source="test://pattern?size=96x72&fps=10&name=cam"):
    return [sys.executable, "-m", "lfdn_edge", "stream", source, "--engine", str(ckpt), "--mqtt", mqtt_url,
            "--out", "-", *extra]


def start_child(cmd, tmp_path, name):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out, err = open(tmp_path / f"{name}.out", "wb"), open(tmp_path / f"{name}.err", "wb")
    return subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=str(ROOT)), tmp_path / f"{name}.out", \
        tmp_path / f"{name}.err"


def child_text(*paths):
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in paths)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_last_will_offline_when_the_process_dies_or_hangs(broker_factory, subscribers, trained, tmp_path, how):
    """keepalive 2 s: a killed process's socket closes, so the broker publishes the will at once; a hung one
    (SIGSTOP: the socket stays open, no more pings) is found dead after 1.5 x keepalive = 3 s."""
    b = broker_factory(auth=True)
    sub = subscribers(b.port, "w", auth=True)
    p, out, err = start_child(stream_cmd(trained[0], url(b.port, "w", auth=True, keepalive=2, client_id="child")),
                              tmp_path, "child")
    try:
        assert sub.wait(lambda m: m.topic == "w/status" and m.payload == "online", 60) is not None, child_text(err)
        assert sub.wait(lambda m: m.topic == "w/cam/result", 30) is not None, child_text(err)
        t_kill = time.monotonic()
        os.kill(p.pid, getattr(signal, how))
        will = sub.wait(lambda m: m.topic == "w/status" and m.payload == "offline", 10)
        assert will is not None, f"no last will within 10 s after {how}"
        delay = will.t - t_kill
        print(f"last will after {how}: {delay:.3f} s")
        if how == "SIGKILL":
            assert delay < 1.0
        else:   # mosquitto: no packet for 1.5 x keepalive; its check runs about once a second
            # mosquitto 2.0 counts whole seconds (gone when now > last packet + 3 s): 3.5-4.8 s measured
            assert 2.0 <= delay <= 1.5 * 2 + 3.0, delay
    finally:
        p.kill()
        p.wait(10)
    assert [m.payload for m in sub.on("status")] == ["online", "offline"]
    text = child_text(out, err)
    assert SECRET not in text


def test_clean_exit_publishes_offline_and_reports_counts(broker_factory, subscribers, trained, tmp_path):
    b = broker_factory(auth=True)
    sub = subscribers(b.port, "c", auth=True)
    cfg = tmp_path / "cams.json"
    cfg.write_text(json.dumps({"mqtt": url(b.port, "c", auth=True),
                               "cameras": [{"uri": "test://pattern?live=0&size=96x72&frames=10", "name": "a"}]}),
                   encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "lfdn_edge", "stream", "--config", str(cfg), "--engine", str(trained[0]),
                        "--out", str(tmp_path / "r.jsonl")], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert sub.wait(lambda m: m.topic == "c/status" and m.payload == "offline", 5) is not None
    assert [m.payload for m in sub.on("status")] == ["online", "offline"]
    assert len(sub.on("a/result")) == 10 and len(sub.on("summary")) == 1
    assert f"mqtt mqtt://***:***@127.0.0.1:{b.port}/c: {len(lines)} sent, 0 dropped, 1 connects" in p.stderr
    assert SECRET not in p.stderr + p.stdout


def test_wrong_password_is_refused_and_never_logged(broker_factory, caplog):
    b = broker_factory(auth=True)
    caplog.set_level(logging.INFO, logger="lfdn_edge.stream.mqtt")
    bad = f"mqtt://{USER}:wrong-{SECRET}@127.0.0.1:{b.port}/x"
    with ls.MqttSink(bad, flush_timeout=0.5) as ms:
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end and "refused" not in caplog.text:
            time.sleep(0.05)
        ms.write(ls.Status("cam", "connected", time.time()))
    assert "connection refused" in caplog.text and f"***:***@127.0.0.1:{b.port}/x" in caplog.text
    assert SECRET not in caplog.text and ms.stats["connects"] == 0 and ms.stats["dropped"] == 1


def test_tls_with_the_brokers_certificate_and_refused_without_it(broker_factory, subscribers, caplog):
    """mqtts://: the broker's self-signed certificate given as ca= connects and delivers; with the system's
    CAs (no ca=) the certificate is not trusted, so the sink never connects (verification is on)."""
    tls_port = free_port()
    b = broker_factory(tls_port=tls_port)
    sub = subscribers(b.port, "s")   # on the plain listener of the same broker
    st = ls.Status("cam", "connected", time.time())
    with ls.MqttSink(f"mqtts://127.0.0.1:{tls_port}/s?ca={b.cert}", flush_timeout=2.0) as ms:
        t_end = time.monotonic() + 5
        while not ms.connected and time.monotonic() < t_end:
            time.sleep(0.02)
        ms.write(st)
    assert ms.stats["connects"] == 1 and ms.stats["sent"] == 1, ms.stats
    m = sub.wait(lambda m: m.topic == "s/cam/status", 5)
    assert m is not None and json.loads(m.payload) == st.to_dict()
    caplog.set_level(logging.WARNING, logger="lfdn_edge.stream.mqtt")
    with ls.MqttSink(f"mqtts://127.0.0.1:{tls_port}/s2", flush_timeout=0.5) as untrusted:
        t_end = time.monotonic() + 5
        while "cannot connect" not in caplog.text and time.monotonic() < t_end:
            time.sleep(0.02)
        untrusted.write(st)
    assert untrusted.stats["connects"] == 0 and untrusted.stats["dropped"] == 1
    assert f"MQTT mqtts://127.0.0.1:{tls_port}/s2: cannot connect" in caplog.text


def test_a_hung_broker_blocks_neither_write_nor_close(broker_factory):
    """The broker stops answering (SIGSTOP: connection open, nothing read or acknowledged): 500 QoS 1 writes
    return at once, at most ``queue`` wait, the rest are dropped, and close gives up after its flush timeout."""
    b = broker_factory()
    ms = ls.MqttSink(url(b.port, "h", queue=20, keepalive=30), flush_timeout=1.0)
    try:
        t_end = time.monotonic() + 5
        while not ms.connected and time.monotonic() < t_end:
            time.sleep(0.02)
        assert ms.connected
        os.kill(b.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        for k in range(500):
            ms.write(ls.Status(f"cam{k % 3}", "connected", time.time()))
        t_write = time.monotonic() - t0
        t0 = time.monotonic()
        ms.close()
        t_close = time.monotonic() - t0
    finally:
        ms.close()
        os.kill(b.proc.pid, signal.SIGCONT)
    s = ms.stats
    assert t_write < 1.0 and t_close < 1.0 + 1.0, (t_write, t_close)
    # the queue bound holds (20 pending at most; 19 when paho refused one publish outright while the broker hung, seen
    # once in CI under load), nothing was acknowledged, and every write was dropped or abandoned at close
    assert 10 <= s["max_pending"] <= 20 and s["sent"] == 0 and s["dropped"] == 500, s


def live_stream(scorer, sinks, duration, events=None):
    """A live test:// camera at 20 fps for ``duration`` s into every sink; (records, seconds)."""
    recs = []
    t0 = time.monotonic()
    with ls.open(["test://pattern?size=96x72&fps=20&name=cam"], scorer, duration=duration) as s:
        for rec in s:
            recs.append(rec)
            for sink in sinks:
                sink.write(rec)
            for at, fn in list(events or []):
                if time.monotonic() - t0 >= at:
                    events.remove((at, fn))
                    fn()
    return recs, time.monotonic() - t0


def test_broker_down_at_start_the_stream_scores_drops_are_counted_and_it_connects_later(broker_factory, subscribers,
                                                                                       scorer, tmp_path):
    b = broker_factory(start=False)
    out = tmp_path / "r.jsonl"
    subs = []
    with ls.JsonLinesSink(str(out)) as js:
        # results at QoS 1 here: kept while disconnected, so the queue fills (QoS 0 ones are dropped at once)
        ms = ls.MqttSink(url(b.port, "d", queue=5, result_qos=1), reconnect_delay=(1, 1), flush_timeout=1.0)
        recs, dt = live_stream(scorer, [js, ms], 4.0,
                               [(1.5, lambda: (b.start(), subs.append(subscribers(b.port, "d"))))])
        connected = ms.connected
        t0 = time.monotonic()
        ms.close()
        t_close = time.monotonic() - t0
    n = sum(isinstance(r, ls.Result) for r in recs)
    assert n >= 40 and sum(r.score is not None for r in recs if isinstance(r, ls.Result)) >= 40   # kept scoring
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(recs) == ms.stats["written"]
    assert dt < 4.0 + 2.0 and t_close < 1.5
    s = ms.stats
    assert connected and s["connects"] == 1 and s["dropped"] >= 10, s   # the results of the first ~1.5 s
    assert s["max_pending"] <= 5 and s["sent"] + s["dropped"] == s["written"], s
    got = subs[0].on("cam/result")
    assert 20 <= len(got) <= s["sent"]


def test_broker_killed_mid_run_the_stream_goes_on_and_reconnects(broker_factory, subscribers, scorer, tmp_path):
    b = broker_factory()
    sub = subscribers(b.port, "k")
    out = tmp_path / "r.jsonl"
    with ls.JsonLinesSink(str(out)) as js:
        ms = ls.MqttSink(url(b.port, "k", queue=50), reconnect_delay=(1, 1), flush_timeout=1.0)
        assert sub.wait(lambda m: m.topic == "k/status" and m.payload == "online", 5) is not None
        recs, dt = live_stream(scorer, [js, ms], 5.0, [(1.5, b.kill), (3.0, b.start)])
        t0 = time.monotonic()
        ms.close()
        t_close = time.monotonic() - t0
    s = ms.stats
    assert dt < 5.0 + 2.0 and t_close < 1.5
    assert s["connects"] == 2 and s["disconnects"] == 2 and s["dropped"] >= 10 and s["max_pending"] <= 50, s
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(recs) == s["written"]
    assert sum(isinstance(r, ls.Result) and r.score is not None for r in recs) >= 60
    frames = [json.loads(m.payload)["frame"] for m in sub.on("cam/result")]
    gap = max(b2 - a for a, b2 in zip(frames, frames[1:]))
    assert frames[0] <= 10 and frames[-1] >= max(r.frame for r in recs if isinstance(r, ls.Result)) - 5, frames
    assert gap >= 20, gap   # the frames while the broker was down went to the JSON lines only
    # close() has published them; the subscriber receives them asynchronously (a CI run under load checked before
    # the last one arrived)
    sub.wait(lambda m: m.topic.endswith("/summary"), 5)
    sub.wait(lambda m: m.topic.endswith("/status") and m.payload == "offline" and
             [x.payload for x in sub.msgs if x.topic == m.topic][-1] == "offline", 5)
    assert [m.payload for m in sub.on("status")][-1] == "offline" and sub.on("summary")
