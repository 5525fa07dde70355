"""Event clips (lfdn_edge.stream.clips) end to end: H.264 and MJPEG files written with PyAV with known anomalous
segments go through ls.open with clips on, scored by a small trained checkpoint (tests/stream_common.py, as in
tests/test_stream_pipeline.py); the clips are read back with PyAV and compared packet by packet with the source.

The H.264 files have a fixed GOP of 10 frames (x264 keyint = min-keyint = 10, no scene-cut keyframes) at 15 fps,
so a clip starts at most 9 frames (0.6 s) before ``start - pre``; MJPEG frames are all keyframes, so there it
starts exactly there. Without B-frames a clip ends exactly at the last frame at or before ``end + post`` (or the
file's end); with B-frames (2 here) up to 2 frames later (the frames decoded before it)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lfdn_edge.stream as ls
from lfdn_edge.stream import clips as clips_mod
from lfdn_edge.stream.synthetic import SyntheticConfig, render
import stream_common
from stream_common import stream_threads, train_scene_model

av = pytest.importorskip("av", reason="PyAV (the [stream] extra) decodes and writes the video files")

SIZE = (96, 72)
FPS = 15
GOP = 10
TRUTH = [(20, 34), (60, 69)]
X264_GOP = {"x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0"}
X264_BFRAMES = {"x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=2:b-adapt=0"}
EPS = 1e-4


@pytest.fixture(autouse=True)
def no_leftover_threads():
    yield
    assert stream_threads() == []


def write_video(path, codec, n, anomalies, options=None, seed=5):
    return stream_common.write_video(path, codec, n, anomalies, SIZE, FPS, seed, options)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, calibration scores): the test:// scene's normal frames, raw and through both codecs."""
    raw = [render(SyntheticConfig(size=SIZE, seed=11), k) for k in range(0, 300, 3)]
    tmp = tmp_path_factory.mktemp("train-videos")
    coded = []
    for codec, ext, seed, opt in (("libx264", "mp4", 12, X264_GOP), ("mjpeg", "avi", 13, None)):
        with av.open(str(write_video(tmp / f"t.{ext}", codec, 200, [], opt, seed=seed))) as c:
            coded += [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return train_scene_model([np.stack(raw + coded[::2])], tmp_path_factory.mktemp("clips"), 240)


@pytest.fixture(scope="module")
def scorer(trained):
    from lfdn_edge.runtime.scorer import Scorer

    return Scorer(trained[0])


@pytest.fixture(scope="module")
def on(trained):
    cal = trained[1]
    return float(cal.mean() + 6.0 * cal.std())   # as tests/test_stream_pipeline.py: above every normal frame


def packets_of(path):
    """[(bytes, is_keyframe, pts seconds)] of the video stream, in decode order."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        return [(bytes(p), bool(p.is_keyframe), float(p.pts * p.time_base)) for p in c.demux(st) if p.size]


def decoded(path):
    """(codec name, [(pts seconds, rgb array)]) in presentation order."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        name = st.codec_context.name
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(st)]
    return name, frames


def run(sources, scorer, **kw):
    with ls.open(sources, scorer, **kw) as s:
        return list(s)


def split(recs):
    results = [r for r in recs if isinstance(r, ls.Result)]
    events = [r for r in recs if isinstance(r, ls.Event)]
    clips = [r for r in recs if isinstance(r, ls.Clip)]
    return results, events, clips


def find_run(hay, needle):
    """Where the list needle occurs in hay as a contiguous run, or -1."""
    for i in range(len(hay) - len(needle) + 1):
        if hay[i:i + len(needle)] == needle:
            return i
    return -1


@pytest.mark.parametrize("codec,ext,options", [("libx264", "mp4", X264_GOP), ("mjpeg", "avi", None)],
                         ids=["h264", "mjpeg"])
def test_one_clip_per_event_copies_the_source_packets_and_covers_the_window(tmp_path, scorer, on, codec, ext,
                                                                            options):
    src = write_video(tmp_path / f"cam.{ext}", codec, 90, TRUTH, options)
    pre, post = 1.0, 1.0
    out = tmp_path / "clips"
    recs = run([str(src)], scorer, alerts=ls.AlertConfig(on=on, hold=0.2),
               clips=ls.ClipConfig(str(out), pre_s=pre, post_s=post))
    results, events, clips = split(recs)
    assert [r.frame for r in results] == list(range(90))
    cap = np.array([r.capture_time for r in results])             # frame k's capture time (the pts clock)
    starts = {e.id: e for e in events if e.kind == "start"}
    ends = {e.id: e for e in events if e.kind == "end"}
    assert [(starts[i].frame, ends[i].frame) for i in starts] and len(starts) == len(TRUTH) == len(ends)
    assert sorted(c.event_id for c in clips) == sorted(starts)      # one clip per event
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(c.path).name for c in clips)   # no .part left
    src_pk = packets_of(src)
    src_codec, src_frames = decoded(src)
    assert len(src_pk) == 90 and all(k for _, k, _ in src_pk[::GOP])
    for c in clips:
        ev_s, ev_e = starts[c.event_id], ends[c.event_id]
        assert all(e.clip == c.path for e in events if e.id == c.event_id)   # start, updates, end: the path
        assert c.error == "" and c.codec == src_codec and c.container == "mp4" and Path(c.path).suffix == ".mp4"
        # stream copy: the clip's packets are the source's, byte for byte, from a keyframe on
        pk = packets_of(c.path)
        i0 = find_run([b for b, _, _ in src_pk], [b for b, _, _ in pk])
        assert i0 >= 0, "the clip's packets are not a run of the source's packets"
        i1 = i0 + len(pk)                                             # frames i0 .. i1-1 (no reordering here)
        assert pk[0][1] and src_pk[i0][1], "the clip does not start at a keyframe"
        assert c.bytes == sum(len(b) for b, _, _ in pk)
        # the window [start - pre, end + post]: from the keyframe at or before start - pre (within one GOP) ...
        want0 = ev_s.start_time - pre
        if want0 < cap[0]:
            assert i0 == 0
        else:
            assert cap[i0] <= want0 + EPS and want0 - cap[i0] < (GOP if codec == "libx264" else 1) / FPS, \
                (i0, ev_s.frame)
            assert codec == "libx264" or i0 == ev_s.frame - round(pre * FPS)
        # ... to the last frame at or before end + post, exactly (or the file's end)
        want1 = ev_e.end_time + post
        assert i1 - 1 == (89 if want1 > cap[-1] else int(np.nonzero(cap <= want1 + EPS)[0][-1])), (i1, ev_e.frame)
        assert i1 - 1 == min(89, ev_e.frame + round(post * FPS))
        # the record: first/last capture time, frame count, duration
        assert c.frames == len(pk) == i1 - i0
        assert c.first_time == pytest.approx(cap[i0], abs=1e-6) and c.last_time == pytest.approx(cap[i1 - 1], abs=1e-6)
        assert c.duration_s == pytest.approx(c.last_time - c.first_time, abs=1e-9)
        assert c.reason in ("complete", "source ended")
        # the clip decodes: every frame, the same pixels as the source's (same bitstream), timestamps from 0
        name, fr = decoded(c.path)
        assert name == src_codec and len(fr) == c.frames
        assert fr[0][0] == pytest.approx(0.0, abs=1e-6)
        assert fr[-1][0] - fr[0][0] == pytest.approx(c.duration_s, abs=2e-3)
        for k, (t, img) in enumerate(fr):
            assert c.first_time + t == pytest.approx(cap[i0 + k], abs=2e-3)
            assert np.array_equal(img, src_frames[i0 + k][1])


@pytest.mark.parametrize("kind", ["ffv1", "png"])
def test_other_codecs_go_to_matroska_or_the_first_muxer_that_takes_them(tmp_path, scorer, on, kind):
    """FFV1 (a Matroska codec, not an MP4 one) gives a .mkv clip; an image sequence's PNG files (which FFmpeg's
    Matroska muxer refuses) an MP4 one. Every frame is a keyframe: the clip is exactly the window, its packets
    the source's (for PNG: the image files themselves)."""
    cfg = SyntheticConfig(size=SIZE, anomalies=((15, 24),), seed=5, fps=FPS)
    if kind == "png":
        from PIL import Image

        d = tmp_path / "seq"
        d.mkdir()
        for k in range(40):
            Image.fromarray(render(cfg, k)).save(d / f"img{k:04d}.png")
        uri = f"{d}/img%04d.png?fps={FPS}"
    else:
        uri = str(write_video(tmp_path / "cam.mkv", "ffv1", 40, [(15, 24)], {"g": "1"}))   # all keyframes
    recs = run([uri], scorer, alerts=ls.AlertConfig(on=on, hold=0.2),
               clips=ls.ClipConfig(str(tmp_path / "clips"), pre_s=0.4, post_s=0.4))
    results, events, clips = split(recs)
    start = next(e for e in events if e.kind == "start")
    end = next(e for e in events if e.kind == "end")
    want = ("matroska", ".mkv") if kind == "ffv1" else ("mp4", ".mp4")
    assert len(clips) == 1 and (clips[0].container, Path(clips[0].path).suffix) == want
    c = clips[0]
    k0, k1 = start.frame - 6, min(39, end.frame + 6)                   # 0.4 s at 15 fps
    pk = packets_of(c.path)
    src = [(d / f"img{k:04d}.png").read_bytes() for k in range(40)] if kind == "png" else \
        [b for b, _, _ in packets_of(uri)]
    assert [b for b, _, _ in pk] == src[k0:k1 + 1] and all(k for _, k, _ in pk)
    cap = {r.frame: r.capture_time for r in results}
    assert c.first_time == pytest.approx(cap[k0], abs=1e-6) and c.last_time == pytest.approx(cap[k1], abs=1e-6)
    name, fr = decoded(c.path)
    assert name == kind and len(fr) == c.frames == k1 - k0 + 1
    if kind == "png":   # lossless: the rendered frames themselves
        assert all(np.array_equal(img, render(cfg, k0 + i)) for i, (_, img) in enumerate(fr))


def test_b_frames_clip_starts_at_a_keyframe_and_holds_the_whole_window(tmp_path, scorer, on):
    """With B-frames the packets come in decode order: the clip holds every frame of the window, and at most
    the 2 frames (the B-frame depth) after it that were decoded before the window's last frame."""
    src = write_video(tmp_path / "b.mp4", "libx264", 90, TRUTH, X264_BFRAMES)
    pre, post = 0.5, 0.5
    recs = run([str(src)], scorer, alerts=ls.AlertConfig(on=on, hold=0.2),
               clips=ls.ClipConfig(str(tmp_path / "clips"), pre_s=pre, post_s=post))
    results, events, clips = split(recs)
    cap = np.array([r.capture_time for r in results])
    src_pk = packets_of(src)
    assert any(b[2] < a[2] for a, b in zip(src_pk, src_pk[1:])), "no B-frames were written"
    ends = {e.id: e for e in events if e.kind == "end"}
    assert len(clips) == len(ends) == 2
    for c in clips:
        ev = ends[c.event_id]
        pk = packets_of(c.path)
        assert find_run([b for b, _, _ in src_pk], [b for b, _, _ in pk]) >= 0 and pk[0][1]
        _, fr = decoded(c.path)
        assert len(fr) == c.frames == len(pk)
        got = np.round((np.array([c.first_time + t for t, _ in fr]) - cap[0]) * FPS).astype(int)
        assert list(got) == sorted(set(got))
        first = int(np.nonzero(cap <= ev.start_time - pre + EPS)[0][-1])
        last = min(89, int(np.nonzero(cap <= ev.end_time + post + EPS)[0][-1]))
        assert got[0] <= first and first - got[0] < GOP and got[0] % GOP == 0
        assert set(range(got[0], last + 1)) <= set(got)                   # the whole window
        extra = [k for k in got if k > last]                              # B-frames' references after it
        assert len(extra) <= 2 and all(k <= last + 3 for k in extra), (extra, last)
        assert c.last_time == pytest.approx(cap[got[-1]], abs=1e-6)


def test_the_ring_stays_bounded_over_a_long_replay_with_many_events(tmp_path, scorer, on, monkeypatch):
    segs = [(a, a + 7) for a in range(20, 300, 35)]                 # 8 events in 300 frames (20 s at 15 fps)
    src = write_video(tmp_path / "long.mp4", "libx264", 300, segs, X264_GOP)
    src_pk = packets_of(src)
    gop_bytes = [sum(len(b) for b, _, _ in src_pk[i:i + GOP]) for i in range(0, 300, GOP)]
    cap_bytes = int(1.5 * max(gop_bytes))   # 2-3 GOPs (anomalous ones are larger): less than pre_s (2 s = 3 GOPs)
    seen = []
    add = clips_mod.PacketRing.add

    def checked_add(self, p):
        ok = add(self, p)
        keep = self.items
        seen.append((self.bytes, sum(len(q.data) for q in keep), bool(keep) and keep[0].key,
                     (keep[-1].pts_s - keep[0].pts_s) if keep else 0.0))
        return ok

    monkeypatch.setattr(clips_mod.PacketRing, "add", checked_add)
    recs = run([str(src)], scorer, alerts=ls.AlertConfig(on=on, hold=0.2),
               clips=ls.ClipConfig(str(tmp_path / "clips"), pre_s=2.0, post_s=0.5, ring_bytes=cap_bytes,
                                   slack_s=0.5))
    results, events, clips = split(recs)
    assert len(seen) == 300
    assert max(b for b, _, _, _ in seen) <= cap_bytes                       # the byte bound, every packet
    assert all(b == s for b, s, _, _ in seen)                                # its count is right
    assert all(k for _, _, k, _ in seen)                                     # always from a keyframe
    assert max(b for b, _, _, _ in seen) > cap_bytes - max(gop_bytes)        # ... and it was reached
    assert max(d for _, _, _, d in seen) < 2.5 + GOP / FPS                   # pre + slack + one GOP
    summ = recs[-1].cameras["cam0"]["clips"]
    assert summ["ring_peak_bytes"] <= cap_bytes and summ["written"] == len(clips) == 8
    starts = {e.id: e for e in events if e.kind == "start"}
    assert len(starts) == 8
    short = 0
    for c in clips:   # the byte bound shortens the pre-roll (to what fits), never the keyframe start
        pk = packets_of(c.path)
        i0 = find_run([b for b, _, _ in src_pk], [b for b, _, _ in pk])
        k = starts[c.event_id].frame
        assert i0 >= 0 and i0 % GOP == 0 and pk[0][1] and i0 <= k
        assert sum(len(b) for b, _, _ in src_pk[i0:k + 1]) <= cap_bytes
        short += i0 > k - 2 * FPS
    assert short >= 4, short   # the 2 s asked for did not fit in the bytes for most events


def test_packet_ring_keeps_whole_gops_from_a_keyframe_within_its_duration_and_bytes(tmp_path):
    """The ring alone, fed the packets of a real H.264 file: joined mid-GOP (as a live stream may be), by
    duration, by bytes, and a GOP larger than the byte bound."""
    src = write_video(tmp_path / "r.mp4", "libx264", 120, [(50, 57)], X264_GOP)
    with av.open(str(src)) as c:
        pk = [clips_mod.StoredPacket(bytes(p), p.pts, p.dts, p.duration, p.is_keyframe, p.time_base,
                                     float(p.pts * p.time_base), float(p.dts * p.time_base))
              for p in c.demux(c.streams.video[0]) if p.size]
    index = {id(p): k for k, p in enumerate(pk)}
    gop = [sum(len(p.data) for p in pk[i:i + GOP]) for i in range(0, 120, GOP)]
    assert gop[5] > max(gop[:5] + gop[6:])                            # the anomalous GOP is the largest
    ring = clips_mod.PacketRing(keep_s=1.0, max_bytes=1 << 30)
    for n in range(3, 120):                                           # joined at frame 3: mid-GOP
        ring.add(pk[n])
        first = index[id(ring.items[0])] if ring.items else None
        if n < GOP:
            assert first is None                                      # nothing until the first keyframe
        else:   # the last keyframe at or before newest - 1 s (15 frames), or the oldest one
            assert first == max(GOP, (n - 15) // GOP * GOP), (n, first)
            assert ring.bytes == sum(len(p.data) for p in ring.items)
    assert ring.dropped == GOP - 3
    cap = max(gop[:5] + gop[6:]) + 200                                # one normal GOP fits, the anomalous does not
    ring = clips_mod.PacketRing(keep_s=100.0, max_bytes=cap)
    kept = set()
    for n in range(120):
        ring.add(pk[n])
        assert ring.bytes <= cap and (not ring.items or ring.items[0].key)
        kept |= {index[id(p)] for p in ring.items}
    assert not kept & set(range(50, 60)) and set(range(60, 120)) <= kept   # that GOP is skipped, not half kept
    assert ring.peak_bytes <= cap and ring.dropped >= GOP


def test_clips_are_written_off_the_scoring_thread_and_renamed_into_place(tmp_path, scorer, on, monkeypatch):
    """A writer 0.4 s slower per batch: the scored frames keep coming (the batcher never waits for the disk),
    and while a clip is written only its temp name exists."""
    src = write_video(tmp_path / "cam.mp4", "libx264", 90, TRUTH, X264_GOP)
    seen = []
    write = clips_mod.ClipWriter._write

    def slow_write(self, job, batch):
        time.sleep(0.4)
        write(self, job, batch)
        if batch:
            seen.append((job.path.exists(), job.tmp.exists(), job.tmp.name))

    monkeypatch.setattr(clips_mod.ClipWriter, "_write", slow_write)
    out = tmp_path / "clips"
    recs = run([str(src)], scorer, alerts=ls.AlertConfig(on=on, hold=0.2),
               clips=ls.ClipConfig(str(out), pre_s=1.0, post_s=1.0))
    results, events, clips = split(recs)
    gaps = np.diff([r.score_time for r in results])
    assert len(results) == 90 and gaps.max() < 0.3, gaps.max()
    assert seen and all(not final and tmp for final, tmp, _ in seen), seen   # never the final name half-written
    assert {n for _, _, n in seen} == {f".{Path(c.path).name}.part" for c in clips}
    assert len(clips) == 2 and sorted(p.name for p in out.iterdir()) == sorted(Path(c.path).name for c in clips)
    for c in clips:
        assert len(decoded(c.path)[1]) == c.frames


def test_a_reconnect_mid_clip_ends_the_clip_and_the_next_event_uses_the_new_connections_clock(
        tmp_path, scorer, on, monkeypatch):
    from lfdn_edge.stream.decode import PyAVSource
    from lfdn_edge.stream.frames import SourceError

    src = write_video(tmp_path / "cam.mp4", "libx264", 90, TRUTH, X264_GOP)
    read = PyAVSource.read
    failed = []

    def failing_read(self):
        raw = read(self)
        if raw is not None and raw.index == 30 and not failed:   # the connection drops inside event 1
            failed.append(self)
            raise SourceError("connection lost")
        return raw

    monkeypatch.setattr(PyAVSource, "read", failing_read)
    write = clips_mod.ClipWriter._write   # a slow disk: event 1's packets are still to write when it ends

    def slow_write(self, job, batch):
        time.sleep(0.3)
        write(self, job, batch)

    monkeypatch.setattr(clips_mod.ClipWriter, "_write", slow_write)
    recs = run([str(src)], scorer, alerts=ls.AlertConfig(on=on, hold=0.2), backoff=ls.Backoff(0.05, 0.1),
               clips=ls.ClipConfig(str(tmp_path / "clips"), pre_s=1.0, post_s=1.0))
    results, events, clips = split(recs)
    assert [r.frame for r in results] == list(range(90)) and len(failed) == 1   # frame 30 read again
    assert recs[-1].cameras["cam0"]["reconnects"] == 1
    by_id = {c.event_id: c for c in clips}
    assert sorted(by_id) == ["cam0-1", "cam0-2"]
    src_pk = [b for b, _, _ in packets_of(src)]
    c1, c2 = by_id["cam0-1"], by_id["cam0-2"]
    assert c1.reason == "reconnect" and c1.error == ""
    pk1 = [b for b, _, _ in packets_of(c1.path)]
    i0 = find_run(src_pk, pk1)
    assert i0 == 0 and 30 <= len(pk1) <= 35   # up to the packets demuxed before the drop, none after
    cap = {r.frame: r.capture_time for r in results}
    assert c1.first_time == pytest.approx(cap[0], abs=1e-6) and len(decoded(c1.path)[1]) == c1.frames
    # after the reconnect: a new anchor for the frames and for the packets alike
    # (a file replayed faster than real time is re-anchored at the reconnect: its clock jumps, here backwards)
    assert abs(cap[30] - cap[29] - 1 / FPS) > 0.03
    pk2 = [b for b, _, _ in packets_of(c2.path)]
    j0 = find_run(src_pk, pk2)
    assert j0 == 40 and c2.first_time == pytest.approx(cap[40], abs=1e-6)   # keyframe at or before 60 - 15
    assert c2.last_time == pytest.approx(cap[j0 + len(pk2) - 1], abs=1e-6) and c2.reason in ("complete",
                                                                                              "source ended")


class CameraScorer:
    """For the camera stream of the next test (it only serves its frames): a constant score."""

    batch_range = (1, 8, 8)
    threshold = 0.0
    includes_backbone = True
    input_shape = (3, SIZE[1], SIZE[0])
    header: dict = {}

    def score(self, x):
        return np.zeros(len(x))


def test_mjpeg_over_http_gives_clips_of_the_received_parts(tmp_path, scorer, on):
    """A live network source: a test:// camera served as MJPEG over HTTP by a first stream's preview server
    (/stream/cam.mjpg), read by a second stream with clips on. FFmpeg's mpjpeg demuxer gives one packet per part,
    every one a keyframe; the parts carry no time, so the demuxer stamps them with its wall clock at arrival
    (use_wallclock_as_timestamps, in microseconds once the reader rebases the stream): the clip and the results share that clock."""
    cam = ls.open([f"test://pattern?size={SIZE[0]}x{SIZE[1]}&fps=30&frames=90&anomaly=45-59&name=cam"],
                  CameraScorer(), http="127.0.0.1:0")
    cam.start()
    th = threading.Thread(target=lambda: list(cam), name="camera-stream")
    th.start()
    try:
        recs = run([cam.http.url + "stream/cam.mjpg"], scorer, alerts=ls.AlertConfig(on=on, hold=0.2),
                   clips=ls.ClipConfig(str(tmp_path / "clips"), pre_s=0.4, post_s=0.4), retries=0,
                   duration=20.0)
    finally:
        th.join(20)
        cam.close()
    assert not th.is_alive()
    results, events, clips = split(recs)
    assert results and results[0].capture_clock == "pts"
    starts = [e for e in events if e.kind == "start"]
    assert len(starts) == 1 and len(clips) == 1, [ls.to_dict(e) for e in events]
    c, ev = clips[0], starts[0]
    assert c.codec == "mjpeg" and c.container == "mp4" and c.error == ""
    pk = packets_of(c.path)
    assert all(k for _, k, _ in pk) and len(pk) == c.frames
    assert all(b[:2] == b"\xff\xd8" and b[-2:] == b"\xff\xd9" for b, _, _ in pk)   # whole JPEGs
    _, fr = decoded(c.path)
    assert len(fr) == c.frames and fr[0][1].shape == (SIZE[1], SIZE[0], 3)
    # every part is a keyframe: the clip starts at the last part at or before start - pre (parts come at about
    # 30 per second; 0.2 s allows for a late part on these busy cores)
    assert ev.start_time - 0.4 - 0.2 < c.first_time <= ev.start_time - 0.4 + EPS
    caps = {round(r.capture_time, 4) for r in results}
    if results[-1].dropped == 0:   # every received part was scored: the clip starts at one of the results' times
        assert round(c.first_time, 4) in caps or c.first_time < min(caps)
    else:                          # a busy core dropped parts (late) before scoring: the clip still has them
        assert c.first_time <= max(caps)   # a time within what was received (the window is checked above)
    assert c.duration_s == pytest.approx(c.last_time - c.first_time, abs=1e-3)
    assert 15 <= (c.frames - 1) / c.duration_s <= 40                    # the camera's rate (30), not 25 by count


def test_a_source_without_packets_gives_no_clip_and_says_so_once(tmp_path, scorer, on, caplog):
    out = tmp_path / "clips"
    with caplog.at_level(logging.WARNING, logger="lfdn_edge.stream"):
        recs = run(["test://pattern?live=0&size=96x72&frames=40&anomaly=10-18"], scorer,
                   alerts=ls.AlertConfig(on=on, hold=0.1), clips=ls.ClipConfig(str(out)))
    results, events, clips = split(recs)
    assert events and not clips and list(out.iterdir()) == []
    assert all(e.clip is None and "no clips" in e.clip_note and "synthetic" in e.clip_note for e in events)
    d = ls.to_dict(next(e for e in events if e.kind == "end"))
    assert d["clip"] is None and "encoded packets" in d["clip_note"]
    assert recs[-1].cameras["cam0"]["clips"] == {"written": 0, "failed": 0, "ring_peak_bytes": 0,
                                                 "note": events[0].clip_note}
    assert sum("no clips" in r.getMessage() for r in caplog.records) == 1
    plain = run(["test://pattern?live=0&size=96x72&frames=20&anomaly=5-9"], scorer,
                alerts=ls.AlertConfig(on=on, hold=0.1))   # clips off: the records are as they were
    assert all("clip" not in ls.to_dict(e) for e in plain if isinstance(e, ls.Event))
    assert "clips" not in plain[-1].cameras["cam0"]


def test_stream_command_clips_options_and_per_camera_settings(tmp_path, trained, on):
    import json

    from lfdn_edge.cli.stream import main

    src = write_video(tmp_path / "cam.avi", "mjpeg", 60, [(20, 30)])
    cfg = tmp_path / "cams.json"
    cfg.write_text(json.dumps({"cameras": [{"uri": str(src), "name": "a", "clip_pre": 0.2},
                                           {"uri": str(src), "name": "b", "clips": False}]}), encoding="utf-8")
    out, clips = tmp_path / "r.jsonl", tmp_path / "clips"
    rc = main(["--config", str(cfg), "--engine", str(trained[0]), "--out", str(out), "--hold", "0.2",
               "--threshold", repr(on), "--clips", str(clips), "--clip-pre", "1", "--clip-post", "0.4",
               "--events-only", "--quiet"])
    assert rc == 0
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    cl = [x for x in lines if x["type"] == "clip"]
    assert len(cl) == 1 and cl[0]["camera"] == "a" and cl[0]["container"] == "mp4" and cl[0]["codec"] == "mjpeg"
    start = next(x for x in lines if x["type"] == "event" and x["event"] == "start" and x["camera"] == "a")
    end = next(x for x in lines if x["type"] == "event" and x["event"] == "end" and x["camera"] == "a")
    assert end["clip"] == cl[0]["path"] and Path(cl[0]["path"]).parent == clips
    assert cl[0]["first_time"] == pytest.approx(start["start_time"] - 3 / FPS, abs=1e-5)   # the camera's 0.2 s
    assert cl[0]["last_time"] == pytest.approx(end["end_time"] + 6 / FPS, abs=1e-5)        # --clip-post 0.4
    assert cl[0]["frames"] == round((cl[0]["last_time"] - cl[0]["first_time"]) * FPS) + 1
    assert [x.get("clip") for x in lines if x["type"] == "event" and x["camera"] == "b"] and \
        all("clip" not in x for x in lines if x["type"] == "event" and x["camera"] == "b")
    summ = lines[-1]["cameras"]
    assert summ["a"]["clips"]["written"] == 1 and "clips" not in summ["b"]
    with pytest.raises(ValueError, match="clip_pre"):
        ls.load_config(_write(tmp_path / "bad.json", {"cameras": [{"uri": str(src), "clip_pre": -1}]}))
    with pytest.raises(ValueError, match="clips"):
        ls.load_config(_write(tmp_path / "bad2.json", {"cameras": [{"uri": str(src), "clips": "yes"}]}))
    with pytest.raises(ValueError, match="max_s"):
        ls.ClipConfig(str(clips), max_s=0)


def _write(path, doc):
    import json

    path.write_text(json.dumps(doc), encoding="utf-8")
    return path
