"""A TCP proxy for fault injection in the stream tests: 127.0.0.1:port -> an upstream server, one thread
(selectors), modes switched at run time with :meth:`FaultProxy.set_mode`.

- ``pass``: forward both ways.
- ``stall``: forward nothing, keep every socket open: the server's data stays unread (in the kernel's buffers:
  the server sees back-pressure), the client's is read and held; both go on in ``pass`` (a client that closed
  meanwhile closes its server side). New connections are accepted and stall too.
- ``reset``: every client connection is reset (RST: SO_LINGER 0, then close), and so is every new one until the
  mode changes.
- ``corrupt``: after the RTSP handshake, RTP packets interleaved in the TCP stream (``$``, channel, length) on an
  even (RTP, not RTCP) channel get ``flips`` bytes of their payload XORed with a non-zero mask, for a share
  ``rate`` of the packets; the RTP header and the payload's first 2 bytes (H.264 NAL/FU headers) are kept.
- ``truncate``: such packets (a share ``rate``) lose the end of their payload (cut to a fraction in [0, 0.5) of
  it); the interleaved length is rewritten so the framing stays valid.

The server-to-client stream is always parsed into RTSP messages and interleaved frames, so a mode takes effect
at a frame boundary. Every choice (which packet, which bytes) comes from ``random.Random(seed)``: the same
packets in the same order get the same faults. :attr:`stats` counts connections, resets, corrupted and
truncated packets. Pure Python; 127.0.0.1 only; :meth:`close` closes every socket and joins the thread.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import threading
from typing import Optional

MODES = ("pass", "stall", "reset", "corrupt", "truncate")
MAX_HEADER = 1 << 16          # an RTSP message header longer than this is not RTSP: forwarded as it is


class _Conn:
    def __init__(self, client: socket.socket, server: socket.socket):
        self.client = client
        self.server = server
        self.to_client = bytearray()     # ready to send to the client
        self.to_server = bytearray()     # ready to send to the server
        self.held = bytearray()          # client data read while stalled
        self.parse = bytearray()         # server data not yet a whole RTSP message / interleaved frame
        self.closed = False


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], seed: int = 0, rate: float = 0.3, flips: int = 4,
                 host: str = "127.0.0.1"):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate={rate}: expected 0..1")
        self.upstream = upstream
        self.rate = rate
        self.flips = flips
        self.rng = random.Random(seed)
        self.mode = "pass"
        self.stats = {"connections": 0, "resets": 0, "corrupted": 0, "truncated": 0, "rtp": 0}
        self._lock = threading.Lock()
        self._applied = threading.Event()
        self._applied.set()
        self._pending: Optional[str] = None
        self._sel = selectors.DefaultSelector()
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind((host, 0))
        self._listen.listen(16)
        self._listen.setblocking(False)
        self.port = self._listen.getsockname()[1]
        self._conns: list[_Conn] = []
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread = threading.Thread(target=self._loop, name="tcp-fault-proxy", daemon=True)

    # ------------------------------------------------------------------------------------------- control
    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()

    def set_mode(self, mode: str, timeout: float = 5.0) -> None:
        """Switch mode; returns once the proxy's thread has applied it (a reset has reset every connection)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        with self._lock:
            self._pending = mode
            self._applied.clear()
        self._wake_w.send(b"x")
        if not self._applied.wait(timeout):
            raise TimeoutError(f"the proxy did not apply mode {mode!r} in {timeout} s")

    def close(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.ident is not None:
            self._thread.join(5.0)
            if self._thread.is_alive():
                raise RuntimeError("the fault proxy's thread did not stop")
        for c in list(self._conns):
            self._drop(c)
        for s in (self._listen, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()

    # ------------------------------------------------------------------------------------------- loop
    def _loop(self) -> None:
        self._sel.register(self._listen, selectors.EVENT_READ, ("listen", None))
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        while not self._stop.is_set():
            self._apply_pending()
            for c in self._conns:
                self._update_interest(c)
            for key, ev in self._sel.select(0.2):
                what, c = key.data
                if what == "listen":
                    self._accept()
                elif what == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                elif not c.closed:
                    self._service(c, what, ev)
            self._conns = [c for c in self._conns if not c.closed]

    def _apply_pending(self) -> None:
        with self._lock:
            mode, self._pending = self._pending, None
        if mode is None:
            return
        self.mode = mode
        if mode == "reset":
            for c in self._conns:
                self._reset(c)
        elif mode != "stall":
            for c in self._conns:    # what was held during a stall goes on
                c.to_server += c.held
                c.held.clear()
        self._applied.set()

    def _accept(self) -> None:
        while True:
            try:
                cs, _ = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            self.stats["connections"] += 1
            if self.mode == "reset":
                self.stats["resets"] += 1
                _rst(cs)
                continue
            try:
                ss = socket.create_connection(self.upstream, timeout=2.0)
            except OSError:
                cs.close()           # the server is down: the client sees its connection closed
                continue
            for s in (cs, ss):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(cs, ss)
            self._conns.append(c)
            self._sel.register(cs, selectors.EVENT_READ, ("client", c))
            self._sel.register(ss, selectors.EVENT_READ, ("server", c))

    def _update_interest(self, c: _Conn) -> None:
        if c.closed:
            return
        stalled = self.mode == "stall"
        cev = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.to_client and not stalled else 0)
        sev = (0 if stalled else selectors.EVENT_READ) | (selectors.EVENT_WRITE if c.to_server and not stalled
                                                          else 0)
        self._modify(c.client, cev, ("client", c))
        self._modify(c.server, sev, ("server", c))

    def _modify(self, sock: socket.socket, events: int, data) -> None:
        try:
            registered = self._sel.get_key(sock)
        except KeyError:
            registered = None
        if events == 0:
            if registered is not None:
                self._sel.unregister(sock)
        elif registered is None:
            self._sel.register(sock, events, data)
        elif registered.events != events:
            self._sel.modify(sock, events, data)

    def _service(self, c: _Conn, what: str, ev: int) -> None:
        src = c.client if what == "client" else c.server
        try:
            if ev & selectors.EVENT_READ:
                data = src.recv(65536)
                if not data:
                    self._drop(c)
                    return
                if what == "client":
                    (c.held if self.mode == "stall" else c.to_server).extend(data)
                else:
                    c.parse.extend(data)
                    self._frames(c)
            if ev & selectors.EVENT_WRITE and self.mode != "stall":
                buf = c.to_client if what == "client" else c.to_server
                if buf:
                    n = src.send(buf)
                    del buf[:n]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(c)

    # ------------------------------------------------------------------------------------------- faults
    def _frames(self, c: _Conn) -> None:
        """Move whole RTSP messages and interleaved frames from c.parse to c.to_client, faulted by the mode."""
        p = c.parse
        while p:
            if p[0] == 0x24:                                  # '$' channel length(2) packet
                if len(p) < 4:
                    return
                n = struct.unpack(">H", p[2:4])[0]
                if len(p) < 4 + n:
                    return
                channel, pkt = p[1], bytes(p[4:4 + n])
                del p[:4 + n]
                if channel % 2 == 0:
                    self.stats["rtp"] += 1
                    pkt = self._fault(pkt)
                c.to_client += b"$" + bytes([channel]) + struct.pack(">H", len(pkt)) + pkt
                continue
            end = p.find(b"\r\n\r\n")
            if end < 0:
                if len(p) > MAX_HEADER:                      # not RTSP: forward it as it is
                    c.to_client += p
                    p.clear()
                return
            length = 0
            for line in bytes(p[:end]).split(b"\r\n"):
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip() or 0)
            if len(p) < end + 4 + length:
                return
            c.to_client += p[:end + 4 + length]
            del p[:end + 4 + length]

    def _fault(self, pkt: bytes) -> bytes:
        if self.mode not in ("corrupt", "truncate") or len(pkt) < 12:
            return pkt
        cc = pkt[0] & 0x0F
        start = 12 + 4 * cc
        if pkt[0] & 0x10 and len(pkt) >= start + 4:         # header extension
            start += 4 + 4 * struct.unpack(">H", pkt[start + 2:start + 4])[0]
        body = start + 2                                     # keep the NAL / FU-A headers
        if len(pkt) <= body or self.rng.random() >= self.rate:
            return pkt
        if self.mode == "corrupt":
            b = bytearray(pkt)
            for _ in range(self.flips):
                b[self.rng.randrange(body, len(b))] ^= self.rng.randrange(1, 256)
            self.stats["corrupted"] += 1
            return bytes(b)
        keep = body + int((len(pkt) - body) * self.rng.random() * 0.5)
        self.stats["truncated"] += 1
        return pkt[:keep]

    def _reset(self, c: _Conn) -> None:
        self.stats["resets"] += 1
        self._unregister(c)
        _rst(c.client)
        c.server.close()
        c.closed = True

    def _drop(self, c: _Conn) -> None:
        if c.closed:
            return
        self._unregister(c)
        for s in (c.client, c.server):
            try:
                s.close()
            except OSError:
                pass
        c.closed = True

    def _unregister(self, c: _Conn) -> None:
        for s in (c.client, c.server):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass


def _rst(sock: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
