"""A remote scorer that goes away mid-stream (a Triton server restarting): the cameras keep running, frames get
results without a score, every camera gets one scorer_unavailable and one scorer_back status, the scorer is
tried again on a backoff schedule (not once per batch), and scoring resumes. The end-to-end version with a real
PyTriton server stopped and started again is in tests/test_serve.py (serve venv)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import lfdn_edge.stream as ls
from lfdn_edge.stream.scorer_guard import BACK, UNAVAILABLE, ScorerGuard
from stream_common import stream_threads


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert stream_threads() == []


class FlakyScorer:
    """Scores every frame 1.0; raises ConnectionError for calls made while ``down`` is set (as TritonScorer does
    for a server that refuses or times out), ValueError for calls while ``broken`` is set. Records each call's
    time and whether it failed."""
    includes_backbone, input_shape, batch_range, threshold, header = True, (1, 24, 32, 3), (1, 8), 5.0, {}

    def __init__(self):
        self.down = threading.Event()
        self.broken = threading.Event()
        self.calls: list[tuple[float, bool]] = []

    def score(self, x):
        failed = self.down.is_set()
        self.calls.append((time.monotonic(), failed))
        if self.broken.is_set():
            raise ValueError("a bad batch")
        if failed:
            raise ConnectionError("Triton at http://127.0.0.1:1: model 'lfdn_edge': [Errno 111] Connection refused")
        return np.ones(len(x), np.float32)


def run_with_outage(scorer, t_down, t_up, duration, **kw):
    recs, marks = [], {}
    with ls.open(["test://pattern?size=32x24&fps=20&name=a", "test://pattern?size=32x24&fps=20&seed=2&name=b"],
                 scorer, duration=duration, **kw) as s:
        t0 = time.monotonic()
        for r in s:
            recs.append(r)
            now = time.monotonic() - t0
            if "down" not in marks and now >= t_down:
                marks["down"] = time.monotonic()
                scorer.down.set()
            if "up" not in marks and now >= t_up:
                marks["up"] = time.monotonic()
                scorer.down.clear()
    return recs, marks


def test_an_outage_keeps_the_cameras_running_and_scoring_resumes():
    sc = FlakyScorer()
    backoff = ls.Backoff(0.2, 0.4, jitter=0.0)
    recs, marks = run_with_outage(sc, 0.8, 2.3, 3.5, scorer_backoff=backoff)
    res = [r for r in recs if isinstance(r, ls.Result)]
    st = [r for r in recs if isinstance(r, ls.Status) and r.status in (UNAVAILABLE, BACK)]
    # one unavailable and one back per camera, in that order, the error in the detail
    assert sorted((s.camera, s.status) for s in st) == [("a", BACK), ("a", UNAVAILABLE), ("b", BACK),
                                                         ("b", UNAVAILABLE)]
    for cam in ("a", "b"):
        kinds = [s.status for s in st if s.camera == cam]
        assert kinds == [UNAVAILABLE, BACK]
    assert all("Connection refused" in s.detail and "retry in 0.20 s" in s.detail for s in st if s.status == UNAVAILABLE)
    t_fail = min(t for t, failed in sc.calls if failed)
    t_ok = min(t for t, failed in sc.calls if not failed and t > t_fail)
    # the cameras kept running through it: both have results before, during and after, all healthy
    for cam in ("a", "b"):
        mine = [r for r in res if r.camera == cam]
        assert all(r.health == "ok" for r in mine)
        during = [r for r in mine if r.score is None]
        assert len(during) >= 15, len(during)                       # about 1.5 s at 20 fps
        assert [r.score for r in mine if r.score is not None] and mine[-1].score == 1.0
        assert all(r.is_ood is None for r in during)
    # the tries while down follow the backoff (0.2, 0.4, 0.4 ... s), not one per batch (20+ per second)
    fails = [t for t, failed in sc.calls if failed]
    gaps = np.diff(fails)
    assert len(fails) <= 1 + 1.5 / 0.2 and (len(gaps) == 0 or gaps.min() >= 0.2 - 0.01), (len(fails), gaps)
    assert len(fails) >= 3, fails                                   # it kept trying
    assert t_ok - marks["up"] <= 0.4 + 0.2, t_ok - marks["up"]       # back within one delay (+ a batch)
    # the summary counts the frames that went unscored
    summ = recs[-1].cameras
    for cam in ("a", "b"):
        n = sum(1 for r in res if r.camera == cam and r.score is None)
        assert summ[cam]["unscored"] == n and summ[cam]["scored"] + n == summ[cam]["frames"]
    assert marks["down"] < t_fail


def test_another_error_of_the_scorer_still_stops_the_stream():
    sc = FlakyScorer()
    sc.broken.set()
    with pytest.raises(ValueError, match="a bad batch"):
        with ls.open(["test://pattern?size=32x24&fps=20&name=a"], sc, duration=2.0) as s:
            list(s)


def test_the_guard_on_a_clock():
    now = [100.0]
    g = ScorerGuard(["a", "b"], ls.Backoff(0.5, 2.0, jitter=0.0), clock=lambda: now[0])
    assert g.ready() and not g.down and g.succeeded() == []
    st = g.failed(ConnectionError("gone"))
    assert [(s.camera, s.status) for s in st] == [("a", UNAVAILABLE), ("b", UNAVAILABLE)]
    assert st[0].detail == "gone; retry in 0.50 s" and g.down and not g.ready()
    now[0] += 0.49
    assert not g.ready()
    now[0] += 0.02
    assert g.ready() and g.failed(ConnectionError("gone")) == []     # once per outage
    now[0] += 0.99
    assert not g.ready()                                             # 1.0 s the second time
    now[0] += 0.02
    assert g.ready() and g.failed(ConnectionError("gone")) == [] and g.failed(ConnectionError("x")) == []
    assert g.next_try - now[0] == pytest.approx(2.0)                 # capped at the maximum
    back = g.succeeded()
    assert [(s.camera, s.status) for s in back] == [("a", BACK), ("b", BACK)]
    assert back[0].detail == "scoring again after 1.5 s" and not g.down and g.ready()
    assert g.last_error == "x"
    st = g.failed(ConnectionError(""))   # a new outage: statuses again, the delays from the start
    assert len(st) == 2 and g.last_error == "ConnectionError" and g.next_try - now[0] == pytest.approx(0.5)


def test_metrics_show_the_outage_without_losing_the_cameras_own_status():
    """/metrics' state set and /api/state: scorer_unavailable while the scorer is down and the camera is connected;
    a reader status during the outage (reconnecting) wins, and scorer_back returns to the camera's own status,
    not to "connected" by default."""
    from lfdn_edge.stream.metrics import StreamMonitor

    mon = StreamMonitor({"a": ("test://a", 1.0)})

    def shown():
        line = [x for x in mon.metrics().splitlines()
                if x.startswith("lfdn_stream_camera_status{") and x.endswith(" 1")]
        assert len(line) == 1, line
        assert mon.state()["cameras"]["a"]["status"] in line[0]
        return line[0].split('status="')[1].split('"')[0]

    def status(kind):
        mon.observe(ls.Status("a", kind, 0.0))

    status("connected")
    assert shown() == "connected"
    status(UNAVAILABLE)
    assert shown() == "scorer_unavailable"
    status("reconnecting")
    assert shown() == "reconnecting"
    status(BACK)
    assert shown() == "reconnecting"   # the reader's state, not "connected"
    status("connected")
    assert shown() == "connected"
