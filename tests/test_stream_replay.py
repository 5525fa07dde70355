"""A long replay faster than real time: memory stays bounded, every frame is scored, the events are the injected
segments.

Two cameras replayed as fast as they are read (``live=0``: nothing dropped, stamped as if captured at 15 fps):
a test:// source of 12,000 frames with an injected anomaly every 400 frames (30 events), and an H.264 file of
1,500 frames (PyAV: demuxing, decoding, the pts clock) with 5 injected segments; the preview server and the
Prometheus monitor are on (their per-camera history, event list and fps window are what grows with time if
anything does). A cheap brightness scorer stands in for the engine (the test is about the pipeline, which is the
same for any Scorer): the scene is dark, the checkerboard bright, so the mean brightness of a frame separates
them by a wide margin.

Memory: Python's allocations (tracemalloc, every thread) sampled every 500 results after a warm-up; the least-
squares slope over the run must stay under 2 KB per 1,000 frames (a per-frame record kept anywhere costs at
least ~50 bytes per frame, 50 KB per 1,000; one float kept per frame ~32 KB per 1,000). Measured: see
docs/STREAMS.md (Tests).
"""

from __future__ import annotations

import time
import tracemalloc
import urllib.request

import numpy as np
import pytest

import lfdn_edge.stream as ls
from lfdn_edge.stream.synthetic import SyntheticConfig, render
from stream_common import stream_threads

av = pytest.importorskip("av", reason="PyAV (the [stream] extra) decodes the video file")

SIZE = (64, 48)
SYN_FRAMES = 12_000
SYN_PERIOD = 400          # an anomaly of 20 frames every 400
FILE_FRAMES = 1_500
FILE_SEGMENTS = [(150 + 300 * i, 170 + 300 * i) for i in range(5)]
# bytes per 1,000 frames. A per-frame leak of one 32-byte timestamp reads 32-35 KB here; bounded buffers filling up
# and the frames in flight read up to 5.4 KB in CI runs with no leak (3.9 KB with this estimator), so slower leaks
# (a few bytes per frame, or per second) are below what this test can tell from noise.
SLOPE_LIMIT = 8192.0


def reader_threads():
    return stream_threads()


class BrightnessScorer:
    """Scorer-like: a frames engine at the cameras' size; score = mean brightness / 255 (the dark scene is below
    0.3, the checkerboard 0.6 and more; its colours' chroma does not survive resizing or 4:2:0 subsampling)."""

    includes_backbone = True
    input_shape = (1, SIZE[1], SIZE[0], 3)
    batch_range = (1, 32)
    threshold = 0.45
    header: dict = {}

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32).mean(axis=(1, 2, 3)) / 255.0


def write_h264(path, n, segments, size=SIZE, frame_of=lambda k: k):
    cfg = SyntheticConfig(size=size, seed=3, anomalies=tuple(segments))
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=15)
        st.width, st.height = size
        st.pix_fmt = "yuv420p"
        for k in range(n):
            for p in st.encode(av.VideoFrame.from_ndarray(render(cfg, frame_of(k)), format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return path


def slope_per_1000(samples, window=1000):
    """Growth per 1000 frames of the memory's floor: the minimum of each window of `window` frames (samples every
    100 frames), then Theil-Sen over the floors (the median of the slopes between every pair). The frames in flight
    (queues, the batch being scored: +-50 KB) ride on top of the floor and come and go; a leak raises the floor
    itself. (A least-squares fit over samples every 500 frames read 4.6-5.4 KB per 1000 frames in CI runs whose
    memory grew by 318 bytes end to end.)"""
    f = np.array([s[0] for s in samples], dtype=np.float64)
    m = np.array([s[1] for s in samples], dtype=np.float64)
    w = ((f - f[0]) // window).astype(int)
    xs = np.array([f[w == k].mean() for k in np.unique(w)])
    ys = np.array([m[w == k].min() for k in np.unique(w)])
    i, j = np.triu_indices(len(xs), k=1)
    return float(np.median((ys[j] - ys[i]) / (xs[j] - xs[i])) * 1000.0)


def test_a_long_replay_faster_than_real_time_keeps_memory_bounded(tmp_path):
    clip = write_h264(tmp_path / "cam.mp4", FILE_FRAMES, FILE_SEGMENTS)
    syn_segments = [(k + 100, k + 119) for k in range(0, SYN_FRAMES, SYN_PERIOD)]
    anomaly = ",".join(f"{a}-{b}" for a, b in syn_segments)
    uris = [f"test://pattern?live=0&size={SIZE[0]}x{SIZE[1]}&frames={SYN_FRAMES}&anomaly={anomaly}&name=syn",
            f"file://{clip}?name=file"]
    nxt = {"syn": 0, "file": 0}     # the next frame number each camera must give (nothing stored per frame)
    spans = {"syn": [], "file": []}
    starts: dict[str, int] = {}
    samples = []
    summary = None
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        with ls.open(uris, BrightnessScorer(), http="127.0.0.1:0",
                     alerts=ls.AlertConfig(on=0.45, off=0.45, hold=0.0, min_frames=1)) as s:
            url = s.http.url
            n = 0
            for rec in s:
                if isinstance(rec, ls.Result):
                    assert rec.frame == nxt[rec.camera] and rec.score is not None, (rec.camera, rec.frame)
                    nxt[rec.camera] += 1
                    n += 1
                    if n % 100 == 0 and n >= 2000:
                        samples.append((n, tracemalloc.get_traced_memory()[0]))
                elif isinstance(rec, ls.Event) and rec.kind == "start":
                    starts[rec.id] = rec.frame
                elif isinstance(rec, ls.Event) and rec.kind == "end":
                    spans[rec.camera].append((starts.pop(rec.id), rec.frame))
                elif isinstance(rec, ls.Summary):
                    summary = rec
                    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
                        metrics = r.read().decode("utf-8")
        wall = time.monotonic() - t0
    finally:
        tracemalloc.stop()
    assert reader_threads() == []
    total = SYN_FRAMES + FILE_FRAMES
    assert summary is not None and n == total

    assert not starts, "an event without its end"
    # every frame scored once, in order (live=0 and files drop nothing)
    assert nxt == {"syn": SYN_FRAMES, "file": FILE_FRAMES}
    assert summary.cameras["syn"]["scored"] == SYN_FRAMES and summary.cameras["file"]["scored"] == FILE_FRAMES

    # faster than real time: 15 fps per camera would take SYN_FRAMES / 15 = 800 s
    assert wall < SYN_FRAMES / 15.0 / 10.0, f"replay took {wall:.1f} s, not 10x faster than real time"

    # one event per injected segment, exactly its frames
    for cam, truth in (("syn", syn_segments), ("file", FILE_SEGMENTS)):
        got = spans[cam]
        assert len(got) == len(truth), (cam, got[:5], truth[:5])
        for (a, c), (lo, hi) in zip(got, truth):
            assert abs(a - lo) <= 1 and hi <= c <= hi + 2, (cam, (a, c), (lo, hi))
    assert f'lfdn_stream_events_total{{camera="syn"}} {len(syn_segments)}' in metrics

    # memory: no growth with the number of frames
    assert len(samples) >= 100
    slope = slope_per_1000(samples)
    grew = samples[-1][1] - samples[0][1]
    print(f"replay: {total} frames in {wall:.1f} s ({total / wall:.0f} frames/s); traced memory "
          f"{samples[0][1] / 1e6:.2f} -> {samples[-1][1] / 1e6:.2f} MB, slope {slope:.0f} B per 1000 frames")
    assert slope < SLOPE_LIMIT, f"memory grows by {slope:.0f} bytes per 1000 frames (grew {grew} bytes)"


@pytest.mark.parametrize("size", [(96, 72), (320, 240)])
def test_compressed_motion_is_not_frozen_and_a_repeated_frame_is(tmp_path, size):
    """Health through H.264: the moving scene's consecutive frames (libx264's default quality) are never
    'frozen'; a camera that repeats one picture (frames 40-59 = frame 39) is, from its third repeat on."""
    from lfdn_edge.stream.health import HealthMonitor

    clip = write_h264(tmp_path / "f.mp4", 100, [], size, lambda k: 39 if 40 <= k <= 59 else k)
    m = HealthMonitor()
    with av.open(str(clip)) as c:
        states = [m.check(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    frozen = [k for k, h in enumerate(states) if h == "frozen"]
    assert frozen and set(frozen) <= set(range(46, 60)), frozen     # from the 7th repeat on (frozen_frames 8)
    assert set(range(50, 60)) <= set(frozen), frozen          # the encoder converges within a few repeats
    assert states.count("ok") == 100 - len(frozen)
