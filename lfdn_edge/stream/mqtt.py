"""An MQTT sink: the same versioned JSON records as the JSON lines (lfdn_edge.stream.output), published to a broker
with paho-mqtt (>= 2; the [stream] extra).

    mqtt://user:pass@host:1883/PREFIX?client_id=door-box&keepalive=30&queue=1000&qos=1&result_qos=0
    mqtts://user:pass@host:8883/PREFIX?ca=/etc/ssl/ca.pem         (TLS; ca, cert, key: PEM files; default: system CAs)

Topics (PREFIX default ``lfdn-edge``; a camera name's ``/ + #`` become ``_``):

    PREFIX/status           "online" / "offline", retained, QoS 1: availability. "online" is published (retained)
                            at every connect; "offline" is the last will, set before connecting, so the broker
                            publishes it when the process dies or hangs (within 1.5 x keepalive) without a clean
                            disconnect; a clean close publishes "offline" (retained) itself, then disconnects.
    PREFIX/CAMERA/result    one per frame, QoS ``result_qos`` (default 0: a newer frame follows at once; a lost one
                            is not worth a broker round trip or a queued copy)
    PREFIX/CAMERA/event     alert start / update / end, QoS ``qos`` (default 1: delivered at least once)
    PREFIX/CAMERA/status    camera connected / stalled / ..., QoS ``qos``, retained (a new subscriber sees each
                            camera's last state)
    PREFIX/summary          once at the end, QoS ``qos``, retained

The network runs in paho's own thread (loop_start): connecting, reconnecting (1 s doubling up to 30 s) and
sending never block :meth:`MqttSink.write`. At most ``queue`` messages (default 1000) are waiting to be sent or
acknowledged at any time; a record that finds the queue full, or a QoS 0 result while disconnected, is dropped and
counted (``stats["dropped"]``), as is every message still waiting when the sink closes (after at most
``flush_timeout`` seconds). Credentials are never logged: every log line and error carries the redacted URL.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from .records import to_dict
from .uri import redact

log = logging.getLogger("lfdn_edge.stream.mqtt")

DEFAULT_PREFIX = "lfdn-edge"
URL_KEYS = ("client_id", "keepalive", "queue", "qos", "result_qos", "ca", "cert", "key")
ONLINE, OFFLINE = "online", "offline"


def import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ImportError("--mqtt needs paho-mqtt >= 2: pip install 'lfdn-edge[stream]' (or paho-mqtt)") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise ImportError("--mqtt needs paho-mqtt >= 2 (found an older one): pip install -U 'paho-mqtt>=2'")
    return mqtt


@dataclass(frozen=True)
class MqttTarget:
    """A parsed broker URL; ``display`` is redacted (never print password)."""
    host: str
    port: int
    tls: bool
    prefix: str
    username: Optional[str]
    password: Optional[str]
    client_id: str
    keepalive: int
    queue: int
    qos: int
    result_qos: int
    ca: Optional[str]
    cert: Optional[str]
    key: Optional[str]
    display: str

    def __repr__(self) -> str:
        return f"MqttTarget({self.display})"


def _int(key: str, text: str, lo: int, hi: int, url: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"{redact(url)}: {key}={text!r} is not an integer") from None
    if not lo <= v <= hi:
        raise ValueError(f"{redact(url)}: {key}={v} is out of range [{lo}, {hi}]")
    return v


def topic_part(name: str) -> str:
    """A camera name as one topic level: ``/``, ``+``, ``#`` (and NUL) -> ``_``; never empty."""
    out = "".join("_" if c in "/+#\0" else c for c in str(name))
    return out or "_"


def parse_mqtt_url(url: str) -> MqttTarget:
    """``mqtt[s]://[user[:pass]@]host[:port][/prefix][?options]`` -> MqttTarget; ValueError (redacted) if bad."""
    u = urlsplit(str(url).strip())
    if u.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{redact(url)}: an MQTT broker URL is mqtt://host[:port]/prefix or mqtts://...")
    if not u.hostname:
        raise ValueError(f"{redact(url)}: no broker host (mqtt://host:1883/prefix)")
    try:
        port = u.port
    except ValueError:
        raise ValueError(f"{redact(url)}: bad port") from None
    tls = u.scheme == "mqtts"
    prefix = u.path.strip("/") or DEFAULT_PREFIX
    if any(c in prefix for c in "+#\0") or "//" in prefix:
        raise ValueError(f"{redact(url)}: the topic prefix {prefix!r} may not hold + # or empty levels")
    opts = dict(parse_qsl(u.query, keep_blank_values=True))
    unknown = sorted(set(opts) - set(URL_KEYS))
    if unknown:
        raise ValueError(f"{redact(url)}: unknown option(s) {unknown}; known: {', '.join(URL_KEYS)}")
    for k in ("ca", "cert", "key"):
        if k in opts and not tls:
            raise ValueError(f"{redact(url)}: {k}= needs mqtts:// (TLS)")
        if k in opts and not os.path.isfile(opts[k]):
            raise ValueError(f"{redact(url)}: {k}={opts[k]}: no such file")
    if ("cert" in opts) != ("key" in opts):
        raise ValueError(f"{redact(url)}: a client certificate needs both cert= and key=")
    client_id = opts.get("client_id") or f"lfdn-edge-{socket.gethostname()}-{os.getpid()}"
    return MqttTarget(
        host=u.hostname, port=port or (8883 if tls else 1883), tls=tls, prefix=prefix,
        username=None if u.username is None else unquote(u.username),
        password=None if u.password is None else unquote(u.password), client_id=client_id,
        keepalive=_int("keepalive", opts.get("keepalive", "30"), 1, 65535, url),
        queue=_int("queue", opts.get("queue", "1000"), 1, 1_000_000, url),
        qos=_int("qos", opts.get("qos", "1"), 0, 2, url), result_qos=_int("result_qos", opts.get("result_qos", "0"), 0, 2, url),
        ca=opts.get("ca"), cert=opts.get("cert"), key=opts.get("key"), display=redact(url))


class MqttSink:
    """Publishes each record (lfdn_edge.stream.records) as its JSON to PREFIX/CAMERA/TYPE (see the module doc);
    ``write`` never blocks on the network. ``types`` keeps only those record types. ``stats``: sent (handed
    to the broker: written for QoS 0, acknowledged for QoS 1/2), dropped, connects, disconnects, max_pending."""

    def __init__(self, url: str, types: Optional[set[str]] = None, flush_timeout: float = 2.0,
                 reconnect_delay: tuple[int, int] = (1, 30)):
        mqtt = import_paho()
        self.target = parse_mqtt_url(url)
        self.url = self.target.display
        self.types = types
        self.flush_timeout = float(flush_timeout)
        self.availability = f"{self.target.prefix}/status"
        self.stats = {"written": 0, "sent": 0, "dropped": 0, "connects": 0, "disconnects": 0, "max_pending": 0}
        self._pending = 0
        self._mids: set[int] = set()    # records published, not yet sent (written for QoS 0, acknowledged for 1/2)
        self._early: set[int] = set()
        self._own: set[int] = set()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._closed = False
        self._failing = False   # a connection attempt failed since the last connect (logged once)
        self._mqtt = mqtt
        t = self.target
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=t.client_id, protocol=mqtt.MQTTv311,
                        clean_session=True)
        if t.username is not None:
            c.username_pw_set(t.username, t.password)
        if t.tls:
            c.tls_set(ca_certs=t.ca, certfile=t.cert, keyfile=t.key)
        # the last will first: the broker keeps it from the CONNECT and publishes it when the connection dies
        c.will_set(self.availability, OFFLINE, qos=1, retain=True)
        c.max_queued_messages_set(t.queue)
        c.reconnect_delay_set(*reconnect_delay)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        self._client = c
        c.connect_async(t.host, t.port, keepalive=t.keepalive)
        c.loop_start()   # paho's thread: connects, reconnects and sends; a dead broker never blocks write()

    # ------------------------------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT %s: connection refused: %s", self.url, reason)
            return
        with self._lock:
            self.stats["connects"] += 1
        self._failing = False
        self._connected.set()
        log.info("MQTT %s: connected", self.url)
        info = client.publish(self.availability, ONLINE, qos=1, retain=True)   # the birth message
        with self._lock:   # its on_publish comes later, in this same thread
            self._own.add(info.mid)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if not self._failing and not self._closed:   # once per outage; paho retries (1 s doubling up to 30 s)
            self._failing = True
            log.warning("MQTT %s: cannot connect (broker down, unreachable, or TLS refused); retrying", self.url)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            with self._lock:
                self.stats["disconnects"] += 1
            if not self._closed:
                log.warning("MQTT %s: disconnected (%s); reconnecting", self.url, reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            if mid in self._own:           # the birth / offline messages are not records
                self._own.discard(mid)
            elif mid in self._mids:
                self._mids.discard(mid)
                self._done()
            else:                          # acknowledged before write() registered the mid
                self._early.add(mid)

    def _done(self) -> None:
        self._pending -= 1
        self.stats["sent"] += 1
        self._drained.notify_all()

    # ------------------------------------------------------------------------------------------ the sink
    def topic(self, d: dict[str, Any]) -> tuple[str, int, bool]:
        """(topic, qos, retain) of a record's dict."""
        p, t = self.target.prefix, d["type"]
        if t == "summary":
            return f"{p}/summary", self.target.qos, True
        cam = topic_part(d["camera"])
        if t == "result":
            return f"{p}/{cam}/result", self.target.result_qos, False
        return f"{p}/{cam}/{t}", self.target.qos, t == "status"

    def write(self, record: Any) -> None:
        d = to_dict(record)
        if self.types is not None and d["type"] not in self.types:
            return
        topic, qos, retain = self.topic(d)
        payload = json.dumps(d, separators=(",", ":"), allow_nan=False)
        with self._lock:
            self.stats["written"] += 1
            if self._closed or self._pending >= self.target.queue or (qos == 0 and not self._connected.is_set()):
                self._drop()
                return
            self._pending += 1   # reserved: the queue bound holds while paho takes it
        # not under self._lock: paho calls on_publish holding its own message lock, which publish() takes too
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        m = self._mqtt
        with self._lock:
            if info.rc == m.MQTT_ERR_SUCCESS or (qos > 0 and info.rc == m.MQTT_ERR_NO_CONN):   # QoS 1/2: resent
                self.stats["max_pending"] = max(self.stats["max_pending"], self._pending)
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    self._done()
                else:
                    self._mids.add(info.mid)
            else:
                self._pending -= 1
                self._drop()

    def _drop(self) -> None:
        self.stats["dropped"] += 1
        if self.stats["dropped"] == 1:
            log.warning("MQTT %s: dropping messages (broker unreachable or queue full); counted in the summary",
                        self.url)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def close(self) -> None:
        """Wait up to flush_timeout for the queued messages, publish "offline" (retained) and disconnect; the
        messages still queued then count as dropped. Bounded: a dead broker costs at most ~flush_timeout."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + self.flush_timeout
        with self._lock:
            while self._pending > 0 and self._connected.is_set() and time.monotonic() < deadline:
                self._drained.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        if self._connected.is_set():
            info = self._client.publish(self.availability, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):   # not queued: the connection went away meanwhile
                pass
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self.stats["dropped"] += self._pending
            self._pending = 0
            self._mids.clear()
            self._early.clear()

    def summary(self) -> str:
        s = self.stats
        return (f"mqtt {self.url}: {s['sent']} sent, {s['dropped']} dropped, {s['connects']} connects, "
                f"{s['disconnects']} disconnects")

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
