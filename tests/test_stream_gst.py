"""The gst:// decoding path run for real (lfdn_edge.stream.gst.GstSource): a live videotestsrc pipeline through the
stream pipeline, and a bad pipeline's error.

Needs PyGObject importable from the test's Python (pip install "pygobject<3.51" into the venv; building it needs
Debian's libgirepository1.0-dev libcairo2-dev pkg-config) and GStreamer's base plugins (gir1.2-gstreamer-1.0
gstreamer1.0-plugins-base: videotestsrc, videoconvert, appsink). Without them the tests skip, or fail when ``gst``
is in $LFDN_EDGE_REQUIRE_TOOLCHAINS.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import lfdn_edge.stream as ls

REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}
SIZE = (160, 120)
BG = (0x33, 0x66, 0x99)
LIVE = (f"gst://videotestsrc is-live=true pattern=ball num-buffers=45 background-color=0xff{BG[0]:02x}{BG[1]:02x}"
        f"{BG[2]:02x} ! video/x-raw,format=RGB,width={SIZE[0]},height={SIZE[1]},framerate=15/1")


@pytest.fixture(scope="module", autouse=True)
def gst():
    why = None
    try:
        from lfdn_edge.stream.gst import import_gst

        g = import_gst()
        missing = [e for e in ("videotestsrc", "videoconvert", "appsink") if g.ElementFactory.find(e) is None]
        if missing:
            why = f"GStreamer elements missing: {' '.join(missing)} (Debian: gstreamer1.0-plugins-base)"
    except ImportError as exc:
        why = (f"{exc} -- in a venv: apt-get install -y --no-install-recommends libgirepository1.0-dev "
               "libcairo2-dev pkg-config gir1.2-gstreamer-1.0 gstreamer1.0-plugins-base, then pip install "
               "'pygobject<3.51'")
    if why:
        if "gst" in REQUIRED:
            pytest.fail(why + " -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS")
        pytest.skip(why)


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert [t for t in threading.enumerate() if t.name.startswith("lfdn-stream-reader")] == []


class CornerScorer:
    """A cheap Scorer that keeps each frame's shape and top-left pixel."""

    includes_backbone = True
    batch_range = (1, 8)
    threshold = 1e9

    def __init__(self):
        self.input_shape = (3, SIZE[1], SIZE[0])
        self.seen = []

    def score(self, x):
        self.seen += [(tuple(i.shape), tuple(int(v) for v in i[0, 0])) for i in x]
        return x.reshape(len(x), -1).mean(1).astype(np.float64)


def test_a_live_gst_pipeline_flows_paced_with_pts_and_ends():
    info = ls.probe(LIVE)
    assert info["decoder"] == "gstreamer" and info["first_frame"]["shape"] == [SIZE[1], SIZE[0], 3]
    assert info["pipeline"].endswith("appsink name=lfdn_sink max-buffers=2 drop=false sync=false emit-signals=false")
    sc = CornerScorer()
    t0 = time.monotonic()
    with ls.open([LIVE], sc, read_timeout=2.0, duration=8.0) as s:     # (bounded: it ends by itself in 3 s)
        recs = list(s)
    took = time.monotonic() - t0
    res = [r for r in recs if isinstance(r, ls.Result)]
    assert [r.status for r in recs if isinstance(r, ls.Status)] == ["connected", "ended"]
    assert 2.8 <= took < 10, took                                    # 45 buffers at 15 fps: paced, not a burst
    assert all(r.capture_clock == "pts" for r in res)
    # the small ball moves less than the frozen rule's 0.5 grey levels of mean difference in some stretches
    assert sum(r.health == "ok" for r in res) >= 20 and {r.health for r in res} <= {"ok", "frozen"}
    assert {shape for shape, _ in sc.seen} == {(SIZE[1], SIZE[0], 3)}
    assert {px for _, px in sc.seen} == {BG}                          # the background colour, exactly (RGB caps)
    frames = [r.frame for r in res]
    assert frames == sorted(set(frames))
    for a, b in zip(res, res[1:]):
        if b.frame == a.frame + 1:
            assert b.pts - a.pts == pytest.approx(1 / 15, abs=2e-3)
    summ = recs[-1].cameras["cam0"]
    assert summ["state"] == "ended" and summ["reconnects"] == 0
    assert len(res) + summ["dropped"]["late"] == frames[-1] + 1     # every numbered frame scored or counted
    assert frames[-1] + 1 <= 45


class SlowCornerScorer(CornerScorer):
    def score(self, x):
        time.sleep(0.05)
        return super().score(x)


def test_a_pipeline_faster_than_the_scorer_loses_no_frame_uncounted():
    """A non-live pipeline (no is-live: 45 buffers as fast as GStreamer makes them) and a scorer slower than
    that: the appsink applies back-pressure instead of dropping (it dropped 37 of 45 buffers uncounted before),
    so every buffer becomes a numbered frame, scored or counted as dropped late by the newest-frame slot."""
    fast = LIVE.replace("is-live=true ", "")
    sc = SlowCornerScorer()
    with ls.open([fast], sc, read_timeout=2.0, duration=20.0) as s:
        recs = list(s)
    res = [r for r in recs if isinstance(r, ls.Result)]
    summ = recs[-1].cameras["cam0"]
    assert summ["state"] == "ended" and summ["frames"] == len(res)
    assert res[-1].frame == 44 and summ["dropped"]["late"] > 0, (res[-1].frame, summ["dropped"])
    assert len(res) + summ["dropped"]["late"] == 45, (len(res), summ["dropped"])
    with ls.open([{"uri": fast, "live": False}], SlowCornerScorer(), read_timeout=2.0, duration=20.0) as s:
        recs = list(s)   # a camera config with live: false blocks instead: every frame scored
    assert [r.frame for r in recs if isinstance(r, ls.Result)] == list(range(45))
    assert recs[-1].cameras["cam0"]["dropped"] == {"late": 0, "fps": 0}


def test_a_bad_gst_pipeline_is_a_clear_error():
    with ls.open(["gst://nosuchelement ! videoconvert"], CornerScorer(), retries=1,
                 backoff=ls.Backoff(0.05, 0.1)) as s:
        recs = list(s)
    st = [(r.status, r.detail) for r in recs if isinstance(r, ls.Status)]
    assert [a for a, _ in st] == ["reconnecting", "dead"], st
    assert all('no element "nosuchelement"' in d and "bad pipeline" in d for _, d in st)
    assert not [r for r in recs if isinstance(r, ls.Result)]
