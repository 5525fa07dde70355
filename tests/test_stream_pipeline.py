"""The stream end to end with a real (small) trained checkpoint: H.264 and MJPEG files written with PyAV and
test:// sources with known anomalous segments go through readers, the batcher, the Scorer, health and alerts.

The checkpoint: a small LFDN trained on EfficientNet-Lite0 features (64 px) of the test:// scene's normal
frames and calibrated on more of them (the camera's own normal view is the ID data); the injected checkerboard
is far from it. Every test checks that no reader thread is left.

The alert on-threshold (``on``) is set from the calibration frames' scores, mean + 6 standard deviations: the
engine's calibrated threshold accepts 95 % of normal frames by construction (calibration_tpr 0.95), so with it
about 1 normal frame in 20 is above it and starts an event; the MJPEG files' normal frames (a codec with
its own artefacts) scored at or just above it (12 of 65 flagged in one run). How well the scores separate is
checked on its own (every injected frame scores above every normal frame)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import lfdn_edge.stream as ls
from lfdn_edge.stream.synthetic import SyntheticConfig, render
import stream_common
from stream_common import stream_threads, train_scene_model

av = pytest.importorskip("av", reason="PyAV (the [stream] extra) decodes the video files")

SIZE = (96, 72)


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert stream_threads() == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint path, MFsim scores of the held-out normal calibration frames)."""
    raw = [render(SyntheticConfig(size=SIZE, seed=11), k) for k in range(0, 300, 3)]
    tmp = tmp_path_factory.mktemp("train-videos")
    coded = []   # the same scene through both codecs: compression is part of the camera's normal view
    for codec, ext, seed in (("libx264", "mp4", 12), ("mjpeg", "avi", 13)):
        with av.open(str(write_video(tmp / f"t.{ext}", codec, 200, [], seed=seed))) as c:
            coded += [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return train_scene_model([np.stack(raw + coded[::2])], tmp_path_factory.mktemp("stream"), 240)


@pytest.fixture(scope="module")
def ckpt(trained):
    return trained[0]


@pytest.fixture(scope="module")
def on(trained):
    """The alert on-threshold: calibration scores' mean + 6 standard deviations (see the module docstring)."""
    cal = trained[1]
    return float(cal.mean() + 6.0 * cal.std())


@pytest.fixture(scope="module")
def scorer(ckpt):
    from lfdn_edge.runtime.scorer import Scorer

    return Scorer(ckpt)


def write_video(path, codec, n, anomalies, fps=15, seed=5):
    return stream_common.write_video(path, codec, n, anomalies, SIZE, fps, seed)


def segments(events):
    return [(e.start_frame, e.end_frame) for e in events]


def run(sources, scorer, **kw):
    with ls.open(sources, scorer, **kw) as s:
        return list(s)


def event_spans(recs, cam):
    starts = {r.id: r.frame for r in recs if isinstance(r, ls.Event) and r.camera == cam and r.kind == "start"}
    ends = {r.id: r.frame for r in recs if isinstance(r, ls.Event) and r.camera == cam and r.kind == "end"}
    return [(starts[i], ends[i]) for i in starts]


def match(spans, truth, slack=2):
    """precision, recall: an event is right when it overlaps a true segment (its end may trail by the hold)."""
    hit = [any(a <= tb + slack and ta - slack <= b for ta, tb in truth) for a, b in spans]
    found = [any(a <= tb + slack and ta - slack <= b for a, b in spans) for ta, tb in truth]
    return (sum(hit) / len(spans) if spans else 0.0), sum(found) / len(truth)


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("mjpeg", "avi")])
def test_video_files_events_match_the_injected_segments_and_nothing_is_dropped(tmp_path, scorer, on, codec, ext):
    truth = [(20, 34), (60, 69)]
    path = write_video(tmp_path / f"cam.{ext}", codec, 90, truth)
    info = ls.probe(str(path))
    assert info["decoder"] == "pyav" and info["width"] == SIZE[0] and info["codec"] in ("h264", "mjpeg")
    recs = run([str(path)], scorer, alerts=ls.AlertConfig(on=on, hold=0.2))
    results = [r for r in recs if isinstance(r, ls.Result)]
    assert [r.frame for r in results] == list(range(90))                 # a file drops nothing
    assert all(r.capture_clock == "pts" and r.health == "ok" for r in results)
    inside = {k for a, b in truth for k in range(a, b + 1)}
    s_in = [r.score for r in results if r.frame in inside]
    s_out = [r.score for r in results if r.frame not in inside]
    assert min(s_in) > max(s_out), (min(s_in), max(s_out))              # the score separates them
    assert scorer.threshold < min(s_in)                                  # and so does the calibrated threshold
    assert {r.frame for r in results if r.is_ood} == inside              # on: exactly the injected frames
    p, r = match(event_spans(recs, "cam0"), truth)
    assert (p, r) == (1.0, 1.0), event_spans(recs, "cam0")
    ends = [e for e in recs if isinstance(e, ls.Event) and e.kind == "end"]
    assert len(ends) == 2 and all(e.peak_score > on for e in ends)
    summ = recs[-1]
    assert isinstance(summ, ls.Summary) and summ.cameras["cam0"]["dropped"] == {"late": 0, "fps": 0}


def test_health_faults_are_a_status_not_events(scorer, on):
    uri = ("test://pattern?live=0&size=96x72&frames=80&seed=5&anomaly=10-19"
           "&fault=black:30-39,frozen:45-54,corrupt:60-64")
    recs = run([uri], scorer, alerts=ls.AlertConfig(on=on, hold=0.1))
    res = {r.frame: r for r in recs if isinstance(r, ls.Result)}
    assert all(res[k].health == "black" and res[k].score is None for k in range(30, 40))
    assert all(res[k].health == "frozen" and res[k].score is None for k in range(51, 55))   # 7th repeat on
    assert all(res[k].health == "ok" for k in range(45, 51))
    assert all(res[k].health == "undecodable" for k in range(60, 65))
    assert event_spans(recs, "cam0") and all(a <= 21 and b <= 24 for a, b in event_spans(recs, "cam0"))
    assert not any(res[k].is_ood for k in range(25, 80)), "a camera fault became an OOD result"


def test_a_stalled_camera_does_not_delay_the_others_and_reconnects(scorer):
    good = "test://pattern?size=96x72&fps=20&seed=1&name=good"
    stalled = "test://pattern?size=96x72&fps=20&seed=2&name=stuck&fault=stall:5-400"
    t0 = time.monotonic()
    recs = run([good, stalled], scorer, duration=3.0, read_timeout=0.6, backoff=ls.Backoff(0.05, 0.2),
               health=ls.HealthConfig(stall_s=0.3))
    assert time.monotonic() - t0 < 6.0
    times = [r.score_time for r in recs if isinstance(r, ls.Result) and r.camera == "good"]
    gaps = np.diff(times)
    assert len(times) >= 40 and gaps.max() < 0.35, (len(times), gaps.max())   # 20 fps, never held back
    st = [(r.camera, r.status) for r in recs if isinstance(r, ls.Status)]
    assert ("stuck", "stalled") in st and ("stuck", "reconnecting") in st
    assert recs[-1].cameras["stuck"]["reconnects"] >= 1


def test_reconnect_after_a_connection_error_goes_on_without_invented_frames(scorer):
    uri = "test://pattern?live=0&size=96x72&frames=40&fault=error:15-17"
    recs = run([uri], scorer, backoff=ls.Backoff(0.05, 0.1))
    frames = [r.frame for r in recs if isinstance(r, ls.Result)]
    assert frames == [k for k in range(40) if k not in (15, 16, 17)]
    assert [r.status for r in recs if isinstance(r, ls.Status)] == ["connected", "reconnecting", "connected",
                                                                   "ended"]
    assert recs[-1].cameras["cam0"]["reconnects"] == 1


class SlowScorer:
    """The real scorer, 0.15 s slower per call (a loaded device)."""

    def __init__(self, s):
        self._s = s
        self.calls = []

    def __getattr__(self, k):
        return getattr(self._s, k)

    def score(self, x):
        self.calls.append(len(x))
        time.sleep(0.15)
        return self._s.score(x)


def test_live_sources_drop_and_count_when_scoring_is_slower_files_do_not(scorer):
    slow = SlowScorer(scorer)
    recs = run(["test://pattern?size=96x72&fps=40&name=live", "test://pattern?size=96x72&live=0&frames=12&name=f"],
               slow, duration=1.5)
    s = recs[-1].cameras
    assert s["live"]["dropped"]["late"] > 10, s["live"]
    got = [r.frame for r in recs if isinstance(r, ls.Result) and r.camera == "live"]
    assert len(got) + s["live"]["dropped"]["late"] + 2 >= got[-1] - got[0] + 1   # every lost frame is counted
    assert [r.frame for r in recs if isinstance(r, ls.Result) and r.camera == "f"] == list(range(min(12, len(
        [r for r in recs if isinstance(r, ls.Result) and r.camera == "f"]))))
    assert s["f"]["dropped"] == {"late": 0, "fps": 0}
    assert max(slow.calls) <= 2 and len(slow.calls) >= 5     # one call per tick, at most one frame per camera


def test_batches_respect_the_engines_max_batch(ckpt):
    from lfdn_edge.runtime.scorer import Scorer

    s = SlowScorer(Scorer.from_checkpoint(ckpt, batch=(1, 2, 2)))
    s.score = lambda x, _s=s: (_s.calls.append(len(x)), _s._s.score(x))[1]
    uris = [f"test://pattern?size=96x72&live=0&frames=6&seed={i}" for i in range(5)]
    recs = run(uris, s, max_wait=0.5)
    assert sum(isinstance(r, ls.Result) for r in recs) == 30 and max(s.calls) == 2


def test_scoring_runs_with_one_torch_thread_and_leaves_the_callers_setting(scorer):
    """With 2 PyTorch threads on 2 busy cores one 64 px frame took 170-290 ms, with 1 thread 6-10 ms
    (docs/STREAMS.md); the setting is the scoring thread's only while it scores."""
    import torch

    seen = []
    probe = SlowScorer(scorer)
    probe.score = lambda x: (seen.append(torch.get_num_threads()), scorer.score(x))[1]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        recs = run(["test://pattern?live=0&size=96x72&frames=4"], probe)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert sum(isinstance(r, ls.Result) for r in recs) == 4 and seen and set(seen) == {1}
    with pytest.raises(ValueError, match="torch_threads"):
        ls.open(["test://pattern"], scorer, torch_threads=0)


def test_stream_command_writes_versioned_json_lines(ckpt, on, tmp_path):
    out = tmp_path / "r.jsonl"
    cfg = tmp_path / "cams.json"
    cfg.write_text(json.dumps({"cameras": [{"uri": "test://pattern?live=0&size=96x72&frames=20&anomaly=5-12",
                                            "name": "cfgcam"}]}), encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "lfdn_edge", "stream", "test://pattern?live=0&size=96x72&frames=10",
                        "--config", str(cfg), "--engine", str(ckpt), "--out", str(out), "--hold", "0.1",
                        "--threshold", repr(on)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert {x["schema"] for x in lines} == {"lfdn-edge.stream/1"}
    assert sum(x["type"] == "result" for x in lines) == 30 and lines[-1]["type"] == "summary"
    ev = [x for x in lines if x["type"] == "event"]   # one incident: start, an update per new peak, end
    kinds = [x["event"] for x in ev]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) <= {"update"}, kinds
    assert {x["camera"] for x in ev} == {"cfgcam"} and ev[0]["frame"] == 5 and 5 <= ev[-1]["peak_frame"] <= 12
    assert "cfgcam: 20 frames" in p.stderr
    bad = subprocess.run([sys.executable, "-m", "lfdn_edge", "stream", "nope.mp4", "--engine", str(ckpt)],
                         capture_output=True, text=True, timeout=300)
    dead = [json.loads(x) for x in bad.stdout.splitlines() if '"status"' in x]   # a status, not a crash
    assert bad.returncode == 0 and [x["status"] for x in dead if x["type"] == "status"] == ["dead"]
    assert "no such video file" in dead[0]["detail"]
    pr = subprocess.run([sys.executable, "-m", "lfdn_edge", "probe", "test://pattern?size=96x72", "--json"],
                        capture_output=True, text=True, timeout=300)
    assert pr.returncode == 0 and json.loads(pr.stdout)["decoder"] == "synthetic"


def test_events_only_min_frames_and_cooldown_through_the_command(ckpt, on, tmp_path):
    """`--events-only` writes no result line; `--min-frames 3` ignores a 2-frame spike; `--cooldown` folds a
    second segment that starts within it into no new event."""
    uri = "test://pattern?live=0&size=96x72&frames=90&anomaly=10-11,30-40,50-60"
    args = [sys.executable, "-m", "lfdn_edge", "stream", uri, "--engine", str(ckpt), "--threshold", repr(on),
            "--hold", "0.1", "--min-frames", "3", "--events-only"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert {x["type"] for x in lines} <= {"event", "status", "summary"} and lines[-1]["type"] == "summary"
    starts = [x["frame"] for x in lines if x["type"] == "event" and x["event"] == "start"]
    assert starts == [32, 52], starts              # the 3rd frame above the threshold; 10-11 too short
    assert lines[-1]["cameras"]["cam0"]["scored"] == 90
    # a cooldown of 1.5 s after the end of the event at 30-40 (ends at frame ~42): the segment at 50-60 is inside
    p = subprocess.run(args + ["--cooldown", "1.5"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["frame"] for x in lines if x["type"] == "event" and x["event"] == "start"] == [32]


def test_an_image_engine_gets_the_frames_resized_and_scores_as_the_checkpoint(ckpt, tmp_path):
    """A backbone-including engine (onnx, 64x64 uint8 frames): the stream resizes the 96x72 frames for it (PIL
    bilinear, antialiased), and the scores equal the checkpoint's on the full 96x72 frames (the backbone in
    PyTorch, whose own antialiased resize is what training used) within 5e-3; a checkpoint in the stream agrees
    too. Measured: 2.6e-3 at most (PIL's and torch's antialiased bilinear differ by up to 0.7 grey levels, and
    the engine's input is rounded to uint8); nearest-neighbour resizing instead: 7.8e-2."""
    pytest.importorskip("onnxruntime", reason="the onnx engine runs on onnxruntime")
    import torch

    from lfdn_edge.features import FeatureConfig, MultiLayerFeatures
    from lfdn_edge.runtime.scorer import Scorer

    engine = tmp_path / "cam.onnx.fp32.image.engine"
    b = subprocess.run([sys.executable, "-m", "lfdn_edge", "build", str(ckpt), "--backend", "onnx",
                        "--include-backbone", "-o", str(engine)], capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr
    img, ref = Scorer(str(engine)), Scorer(ckpt)
    assert img.includes_backbone and tuple(img.input_shape[1:]) == (64, 64, 3)
    uri = "test://pattern?live=0&size=96x72&frames=24&anomaly=8-15&seed=4"
    by = {}
    for name, sc in (("engine", img), ("ckpt", ref)):
        with ls.open([uri], sc) as s:
            by[name] = {r.frame: r.score for r in s if isinstance(r, ls.Result)}
    assert sorted(by["engine"]) == list(range(24))
    cfg = SyntheticConfig(size=SIZE, anomalies=((8, 15),), seed=4)
    frames = torch.from_numpy(np.stack([render(cfg, k) for k in range(24)]))
    with torch.inference_mode():
        feats = MultiLayerFeatures(FeatureConfig(**ref.header["feature"])).eval()(frames).numpy()
    truth = ref.score(feats)
    for name in ("engine", "ckpt"):
        d = max(abs(by[name][k] - float(truth[k])) for k in range(24))
        assert d < 5e-3, (name, d)
    assert min(by["engine"][k] for k in range(8, 16)) > max(by["engine"][k] for k in (*range(8), *range(16, 24)))


def test_a_live_source_above_its_target_fps_drops_and_counts_the_extra_frames(tmp_path):
    """A 15 fps file read as a live camera with a target of 5 fps: about 2 frames of 3 dropped as `fps`, the
    kept ones about 1/5 s apart."""
    clip = write_video(tmp_path / "c.mp4", "libx264", 45, [])

    class Fast:
        includes_backbone, input_shape, batch_range, threshold, header = True, (1, 72, 96, 3), (1, 8), 1e9, {}

        def score(self, x):
            return np.zeros(len(x))

    recs = run([f"file://{clip}?drop=1&fps=5"], Fast())
    res = [r for r in recs if isinstance(r, ls.Result)]
    summ = recs[-1].cameras["cam0"]
    assert 14 <= len(res) <= 16, len(res)
    assert 28 <= summ["dropped"]["fps"] <= 31 and summ["dropped"]["late"] <= 1, summ["dropped"]
    assert len(res) + summ["dropped"]["fps"] + summ["dropped"]["late"] == 45
    gaps = np.diff([r.capture_time for r in res])
    assert np.all(gaps > 0.999 / 5 - 1e-6) and np.median(gaps) == pytest.approx(0.2, abs=0.01), gaps


def test_sinks_get_every_record_as_it_is_yielded(scorer, on, tmp_path):
    """`sinks=`: each record goes to every sink in the order the iteration yields it; a sink without write()
    is refused before any reader starts."""
    got = []

    class ListSink:
        def write(self, rec):
            got.append(ls.to_dict(rec))

    path = tmp_path / "r.jsonl"
    with ls.JsonLinesSink(str(path)) as js:
        recs = [ls.to_dict(r) for r in run(["test://pattern?live=0&size=96x72&frames=20&anomaly=5-9"], scorer,
                                           alerts=ls.AlertConfig(on=on, hold=0.1), sinks=[js, ListSink()])]
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert recs == got and json.loads(json.dumps(recs)) == lines
    assert [r["type"] for r in lines].count("result") == 20 and lines[-1]["type"] == "summary"
    assert any(r["type"] == "event" for r in lines)
    with pytest.raises(TypeError, match="no write"):
        ls.open(["test://pattern?live=0&frames=2"], scorer, sinks=[object()])


def test_prepare_in_readers_resizes_in_the_reader_threads_with_the_same_scores(scorer):
    """`prepare_in_readers=True`: every frame is resized in its reader's thread, none in the scoring thread,
    and the scores are the default's (the same resize)."""
    uri = "test://pattern?live=0&size=96x72&frames=12&anomaly=4-6"
    out = {}
    for flag in (False, True):
        where = []
        s = ls.open([uri], scorer, prepare_in_readers=flag)
        inner = s.frame_scorer.resize

        def resize(img, inner=inner, where=where):
            if img.shape[:2] == (72, 96):   # a camera frame, not one already at the scorer's size
                where.append(threading.current_thread().name)
            return inner(img)

        s.frame_scorer.resize = resize
        for r in s.readers.values():
            if r.prepare is not None:
                r.prepare = resize
        with s:
            out[flag] = {r.frame: r.score for r in s if isinstance(r, ls.Result)}
        readers = [w for w in where if w.startswith("lfdn-stream-reader")]
        assert (len(readers) == 12 and len(where) == 12) if flag else not readers, where
    assert out[True] == out[False] and len(out[True]) == 12
