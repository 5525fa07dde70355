#!/usr/bin/env python3
"""N-camera benchmark: the stream pipeline (lfdn_edge.stream) against the loop a user would write with OpenCV.

N synthetic 640x480 H.264 cameras (files written with PyAV from the test:// scene renderer), paced in real time
at 15 fps with live semantics (a frame not taken in time is gone), for each N of --cameras:

* ``stream``: ``lfdn_edge.stream.Stream`` over ``file://clip.mp4?drop=1&fps=15`` sources (a file read as a live
  camera: frames arrive at their presentation times, the reader keeps the newest, late ones are dropped and
  counted by the reader);
* ``loop``: per camera in turn ``cv2.VideoCapture.read``, BGR->RGB, ``cv2.resize`` to the engine's input,
  ``Scorer.score`` of one frame. Camera c's frame k exists from t0 + k/fps; when the loop comes to a camera,
  the frames whose time has passed except the newest are skipped (``grab``: decoded, not scored) and counted
  as dropped; a camera with no new frame is passed over.

The clips carry injected anomalies (3 s of the test:// checkerboard every 8 s, shifted per clip): the stream's
alert events (on-threshold: mean + 6 standard deviations of a separate normal clip's scores, as a user sets it
for a camera; hold 0.5 s) are matched to them (precision and recall of events, over every camera).

Both run for --warmup + --duration + --grace seconds; only frames captured in the --duration window count
(scored frames/s, dropped = frames of the window not scored, per-camera rates, p50/p99 latency from capture to
result). The JSON also holds the machine (CPU model, cores, load average, machine-wide busy share during each
run), the commit and isolated per-stage timings (decode, resize, score per batch size).

    python tools/stream_bench.py --ckpt runs/demo/ckpt.pt            # builds the onnx image engine if needed
    python tools/stream_bench.py --engine cam.engine --cameras 1,8 --duration 10
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------------------ machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_ticks() -> Optional[tuple[int, int]]:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


class CpuMeter:
    """Load average, machine-wide CPU busy share and this process's CPU time over a run."""

    def __enter__(self) -> CpuMeter:
        self.load_before = os.getloadavg()
        self.ticks = cpu_ticks()
        self.proc = os.times()
        self.wall = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.monotonic() - self.wall
        p = os.times()
        t = cpu_ticks()
        self.result = {"loadavg_before": [round(x, 2) for x in self.load_before],
                       "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                       "process_cpu_cores": round((p.user + p.system - self.proc.user - self.proc.system) / wall, 3)}
        if t and self.ticks and t[1] > self.ticks[1]:
            ncpu = os.cpu_count() or 1
            share = (t[0] - self.ticks[0]) / (t[1] - self.ticks[1])
            self.result["machine_busy_cores"] = round(share * ncpu, 3)
            self.result["other_processes_cores"] = round(max(0.0, share * ncpu - self.result["process_cpu_cores"]), 3)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ------------------------------------------------------------------------------------------------ inputs
def clip_segments(i: int, frames: int, fps: float) -> list[tuple[int, int]]:
    """The injected anomalous segments of clip i (inclusive frame ranges): 3 s of the checkerboard every 8 s,
    starting 4 s + 1.5 s x i in (so the cameras sharing the cores do not all see them at once)."""
    seg, period, first = int(round(3 * fps)), int(round(8 * fps)), int(round((4 + 1.5 * i) * fps))
    return [(a, a + seg - 1) for a in range(first, frames - seg, period)]


def write_clips(workdir: Path, count: int, seconds: float, fps: float, size: tuple[int, int],
                anomalies: bool = True) -> list[Path]:
    """``count`` H.264 clips of the test:// scene (seeds 1..count; with anomalies: clip_segments(i)), reused
    when already there."""
    n = int(math.ceil(seconds * fps))
    out = []
    for i in range(count):
        segs = clip_segments(i, n, fps) if anomalies else []
        tag = "-anom" if segs else ""
        out.append(write_clip(workdir / f"cam{i}-{size[0]}x{size[1]}-{fps:g}fps-{n}f{tag}.mp4", i + 1, n, fps,
                              size, segs))
    return out


def write_clip(path: Path, seed: int, n: int, fps: float, size: tuple[int, int],
               segments: list[tuple[int, int]]) -> Path:
    import av

    from lfdn_edge.stream.synthetic import SyntheticConfig, render

    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.exists() and path.stat().st_size > 0):
        cfg = SyntheticConfig(size=size, seed=seed, fps=fps, anomalies=tuple(segments))
        tmp = path.with_suffix(".part.mp4")
        with av.open(str(tmp), "w") as c:
            st = c.add_stream("libx264", rate=int(round(fps)))
            st.width, st.height = size
            st.pix_fmt = "yuv420p"
            for k in range(n):
                for p in st.encode(av.VideoFrame.from_ndarray(render(cfg, k), format="rgb24")):
                    c.mux(p)
            for p in st.encode():
                c.mux(p)
        tmp.rename(path)
    return path


def calibrate_threshold(workdir: Path, scorer: Any, fps: float, size: tuple[int, int]) -> dict[str, Any]:
    """The alert on-threshold as a user sets it for a camera (docs/STREAMS.md, Health and alerts): the mean + 6
    standard deviations of the scores of the camera's normal view, here 90 frames of a separate clip (seed 99,
    no anomaly) decoded and scored the way the stream does."""
    import av

    from lfdn_edge.stream.pipeline import FrameScorer

    clip = write_clip(workdir / f"calib-{size[0]}x{size[1]}-{fps:g}fps-90f.mp4", 99, 90, fps, size, [])
    with av.open(str(clip)) as c:
        imgs = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    sc = FrameScorer(scorer, 1)(imgs)
    return {"on": float(sc.mean() + 6 * sc.std()), "normal_mean": float(sc.mean()), "normal_std": float(sc.std()),
            "normal_max": float(sc.max()), "frames": len(imgs), "clip": str(clip)}


def event_match(spans: list[tuple[int, int]], truth: list[tuple[int, int]], slack: int) -> tuple[int, int]:
    """(events that overlap a true segment, true segments that an event overlaps); ``slack`` frames either side
    (the hold after a segment, a dropped first frame)."""
    hit = sum(any(a <= tb + slack and ta - slack <= b for ta, tb in truth) for a, b in spans)
    found = sum(any(a <= tb + slack and ta - slack <= b for a, b in spans) for ta, tb in truth)
    return hit, found


def ensure_engine(ckpt: Path, engine: Optional[Path]) -> Path:
    """The engine to use: --engine as given, else the onnx image engine next to the checkpoint (built if missing
    with ``lfdn-edge build CKPT --backend onnx --include-backbone``)."""
    if engine is not None:
        return engine
    path = ckpt.with_name(f"{ckpt.stem}.onnx.fp32.image.engine")
    if not path.exists():
        subprocess.run([sys.executable, "-m", "lfdn_edge", "build", str(ckpt), "--backend", "onnx",
                        "--include-backbone", "-o", str(path)], check=True)
    return path


# ------------------------------------------------------------------------------------------------ metrics
def summarize(per_cam: dict[str, list[tuple[float, float]]], expected: dict[str, int], duration: float,
              extra: dict[str, Any]) -> dict[str, Any]:
    """per_cam: camera -> [(capture time, latency)] of the scored frames captured in the window."""
    lat = np.array([x[1] for v in per_cam.values() for x in v], dtype=np.float64)
    scored = {c: len(v) for c, v in per_cam.items()}
    rates = {c: round(n / duration, 3) for c, n in scored.items()}
    lo, hi = min(rates.values()), max(rates.values())
    total = sum(scored.values())
    exp = sum(expected.values())
    return {
        "scored": total, "scored_fps": round(total / duration, 2), "expected_frames": exp,
        "dropped": max(0, exp - total), "dropped_share": round((exp - total) / exp, 4) if exp else None,
        "per_camera_fps": rates, "per_camera_fps_min": lo, "per_camera_fps_max": hi,
        "fairness_max_over_min": round(hi / lo, 3) if lo > 0 else None,
        "latency_s": {k: (round(float(np.percentile(lat, q)), 4) if lat.size else None)
                      for k, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        # bounded vs growing: the window's first and second half by capture time
        "latency_p99_halves_s": _halves([x for v in per_cam.values() for x in v]),
        **extra,
    }


def _halves(items: list[tuple[float, float]]) -> Optional[list[float]]:
    if len(items) < 4:
        return None
    items = sorted(items)
    mid = (items[0][0] + items[-1][0]) / 2
    a = [x[1] for x in items if x[0] < mid]
    b = [x[1] for x in items if x[0] >= mid]
    if not a or not b:
        return None
    return [round(float(np.percentile(a, 99)), 4), round(float(np.percentile(b, 99)), 4)]


def expected_in_window(anchor: float, fps: float, w0: float, w1: float, frames: int) -> int:
    """Frames k (0 <= k < frames) with anchor + k/fps in [w0, w1)."""
    a = max(0, math.ceil((w0 - anchor) * fps - 1e-9))
    b = min(frames, math.ceil((w1 - anchor) * fps - 1e-9))
    return max(0, b - a)


class TimedScorer:
    """Wraps the stream's FrameScorer: the time and batch size of every call (scoring-stage evidence)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls: list[tuple[int, float]] = []

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        t = time.perf_counter()
        out = self.inner(images)
        self.calls.append((len(images), time.perf_counter() - t))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def stage_stats(calls: list[tuple[int, float]], wall: float) -> dict[str, Any]:
    if not calls:
        return {"calls": 0}
    b = np.array([c[0] for c in calls])
    t = np.array([c[1] for c in calls])
    return {"calls": len(calls), "batch_mean": round(float(b.mean()), 2), "batch_max": int(b.max()),
            "call_ms_mean": round(1e3 * float(t.mean()), 2), "call_ms_p99": round(1e3 * float(np.percentile(t, 99)), 2),
            "busy_share": round(float(t.sum()) / wall, 3)}


# ------------------------------------------------------------------------------------------------ variants
def run_stream(clips: list[Path], n: int, scorer: Any, a: argparse.Namespace, frames: int) -> dict[str, Any]:
    import lfdn_edge.stream as ls
    from lfdn_edge.stream.records import Event, Result, Summary

    uris = [f"file://{clips[i % len(clips)]}?drop=1&fps={a.fps:g}&name=cam{i:02d}" for i in range(n)]
    total = a.warmup + a.duration + a.grace
    per_cam: dict[str, list[tuple[float, float]]] = {f"cam{i:02d}": [] for i in range(n)}
    anchors: dict[str, float] = {}
    summary = None
    starts: dict[str, tuple[str, int]] = {}
    spans: dict[str, list[tuple[int, int]]] = {f"cam{i:02d}": [] for i in range(n)}
    with CpuMeter() as cpu:
        alerts = ls.AlertConfig(on=a.threshold_on, hold=0.5)
        s = ls.Stream(uris, scorer, max_wait=a.max_wait, duration=total, torch_threads=1, alerts=alerts,
                      prepare_in_readers=a.resize_in == "reader")
        timed = TimedScorer(s.frame_scorer)
        s.frame_scorer = timed
        with s:
            w0 = s.t_start + a.warmup if s.t_start else time.time() + a.warmup
            for rec in s:
                if isinstance(rec, Result):
                    if rec.camera not in anchors and rec.pts is not None:
                        anchors[rec.camera] = rec.capture_time - rec.pts
                    if rec.score is not None and w0 <= rec.capture_time < w0 + a.duration:
                        per_cam[rec.camera].append((rec.capture_time, rec.latency_s))
                elif isinstance(rec, Event) and rec.kind == "start":
                    starts[rec.id] = (rec.camera, rec.frame)
                elif isinstance(rec, Event) and rec.kind == "end":
                    cam, f0 = starts.pop(rec.id)
                    spans[cam].append((f0, rec.frame))
                elif isinstance(rec, Summary):
                    summary = rec
            w0 = s.t_start + a.warmup
    expected = {c: expected_in_window(anchors.get(c, s.t_start), a.fps, w0, w0 + a.duration, frames)
                for c in per_cam}
    dropped_reader = {"late": 0, "fps": 0}
    if summary is not None:
        for c in summary.cameras.values():
            for k in dropped_reader:
                dropped_reader[k] += int(c["dropped"].get(k, 0))
    return summarize(per_cam, expected, a.duration, {
        "reader_dropped_whole_run": dropped_reader, "cpu": cpu.result,
        "scoring_stage": stage_stats(timed.calls, total),
        "events": events_summary(spans, n, len(clips), frames, a.fps, total)})


def events_summary(spans: dict[str, list[tuple[int, int]]], n: int, n_clips: int, frames: int, fps: float,
                   total: float) -> dict[str, Any]:
    """Events against the injected segments, over every camera: the segments that were played (they start 3
    frames or more before the run's last frame), an event per segment expected; slack 0.5 s (the hold) + 2
    frames."""
    played = int(total * fps)
    events = hits = segs = found = 0
    for i in range(n):
        truth = [t for t in clip_segments(i % n_clips, frames, fps) if t[0] + 3 <= played]
        sp = spans[f"cam{i:02d}"]
        h, f = event_match(sp, truth, int(round(0.5 * fps)) + 2)
        events, hits, segs, found = events + len(sp), hits + h, segs + len(truth), found + f
    return {"events": events, "segments": segs, "precision": round(hits / events, 4) if events else None,
            "recall": round(found / segs, 4) if segs else None, "events_per_segment": round(events / segs, 3)
            if segs else None}


def run_loop(clips: list[Path], n: int, scorer: Any, a: argparse.Namespace, frames: int,
             paced: bool = True, every: bool = False) -> dict[str, Any]:
    """The plain loop; ``paced=False``: every frame read in turn as fast as possible (no real time, nothing
    dropped; the reference the issue quotes: scored frames/s only, latency meaningless). ``every=True``
    (paced): the loop exactly as the issue words it, ``cap.read()`` of each camera in turn with nothing
    skipped, as ``cv2.VideoCapture.read`` on a live camera returns the next buffered frame (blocking until it
    exists): once N x fps is more than the loop scores, frames queue up and the latency grows with time."""
    import cv2

    from lfdn_edge.stream.pipeline import FrameScorer

    caps = []
    for i in range(n):
        c = cv2.VideoCapture(str(clips[i % len(clips)]))
        if not c.isOpened():
            raise RuntimeError(f"cv2 cannot open {clips[i % len(clips)]}")
        caps.append(c)
    if scorer.includes_backbone:
        w, h = int(scorer.input_shape[2]), int(scorer.input_shape[1])

        def score_one(img: np.ndarray) -> float:
            x = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (w, h), interpolation=cv2.INTER_LINEAR)
            return float(scorer.score(x[None])[0])
    else:   # a features engine / checkpoint: its backbone in PyTorch, as the stream does (FrameScorer)
        fs = FrameScorer(scorer, 1)

        def score_one(img: np.ndarray) -> float:
            return float(fs([cv2.cvtColor(img, cv2.COLOR_BGR2RGB)])[0])

    names = [f"cam{i:02d}" for i in range(n)]
    per_cam: dict[str, list[tuple[float, float]]] = {c: [] for c in names}
    nxt = [0] * n
    skipped = 0
    t_read = t_score = 0.0
    scores = 0
    total = a.warmup + a.duration + a.grace
    with CpuMeter() as cpu:
        t0 = time.time()
        w0 = t0 + a.warmup
        t_end = t0 + total
        while time.time() < t_end:
            any_frame = False
            for i, cap in enumerate(caps):
                now = time.time()
                if every:   # the next frame, waiting for it if it does not exist yet (a live camera's read)
                    if nxt[i] >= frames:
                        continue
                    wait = t0 + nxt[i] / a.fps - now
                    if wait > 0:
                        time.sleep(min(wait, t_end - now))
                    if time.time() >= t_end:
                        break
                    due = nxt[i]
                else:
                    due = min(frames - 1, int((now - t0) * a.fps)) if paced else min(frames - 1, nxt[i])
                if nxt[i] > due:
                    continue
                t = time.perf_counter()
                while nxt[i] < due:          # its time has passed while the loop was busy: gone
                    cap.grab()
                    nxt[i] += 1
                    skipped += 1
                ok, img = cap.read()
                k = nxt[i]
                nxt[i] += 1
                t1 = time.perf_counter()
                t_read += t1 - t
                if not ok:
                    continue
                score_one(img)
                done = time.time()
                t_score += time.perf_counter() - t1
                scores += 1
                any_frame = True
                cap_t = t0 + k / a.fps if paced else done
                if w0 <= cap_t < w0 + a.duration:
                    per_cam[names[i]].append((cap_t, done - cap_t))
            if not any_frame:
                if not paced:
                    break
                now = time.time()
                wake = min(t0 + min(nxt[i], frames - 1) / a.fps for i in range(n))
                if all(x >= frames for x in nxt):
                    break
                time.sleep(max(0.0, min(wake - now, t_end - now, 0.05)))
    for c in caps:
        c.release()
    wall = total
    expected = {c: expected_in_window(t0, a.fps, w0, w0 + a.duration, frames) if paced else len(per_cam[c])
                for c in names}
    return summarize(per_cam, expected, a.duration, {
        "skipped_whole_run": skipped, "cpu": cpu.result,
        "stages": {"read_ms_per_scored_frame": round(1e3 * t_read / max(1, scores), 2),
                   "resize_score_ms_per_frame": round(1e3 * t_score / max(1, scores), 2),
                   "read_busy_share": round(t_read / wall, 3), "score_busy_share": round(t_score / wall, 3)}})


# ------------------------------------------------------------------------------------------------ kill one
RTSP_SERVER = ROOT / "tests" / "rtsp_server.py"


class RtspServer:
    """tests/rtsp_server.py (Debian's python3 with gst-rtsp-server) serving a clip in real time, looping."""

    def __init__(self, clip: Path, port: int = 0):
        self.clip, self.port, self.proc, self.url = clip, port, None, ""

    def start(self, timeout: float = 20.0) -> RtspServer:
        self.proc = subprocess.Popen(["/usr/bin/python3", str(RTSP_SERVER), "--file", str(self.clip), "--port",
                                      str(self.port), "--mount", "/cam"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        t_end = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < t_end:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("READY "):
                self.url = line.split()[1]
                self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
                return self
        self.kill()
        raise RuntimeError(f"the RTSP server did not start ({RTSP_SERVER})")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def run_kill_one(clips: list[Path], n: int, scorer: Any, a: argparse.Namespace) -> dict[str, Any]:
    """N cameras, cam00 from a real RTSP server (the clip looped), the others as in ``stream``: the server is
    killed (SIGKILL) after --kill-phase seconds of the measured window and restarted on the same port one phase
    later. Rates of the other cameras before / during the outage (scored frames per second per camera), and
    how long cam00 took to give a frame again after the restart."""
    import lfdn_edge.stream as ls
    from lfdn_edge.stream.records import Result, Status

    ph = a.kill_phase
    server = RtspServer(clips[0]).start()
    uris = [f"{server.url}?transport=tcp&name=cam00"] + \
        [f"file://{clips[i % len(clips)]}?drop=1&fps={a.fps:g}&name=cam{i:02d}" for i in range(1, n)]
    total = a.warmup + 3 * ph + a.grace
    times: dict[str, list[float]] = {f"cam{i:02d}": [] for i in range(n)}
    statuses: list[tuple[float, str]] = []
    t_kill = t_restart = 0.0
    killed = restarted = False
    try:
        with ls.Stream(uris, scorer, max_wait=a.max_wait, duration=total, torch_threads=1,
                       alerts=ls.AlertConfig(on=a.threshold_on), read_timeout=2.0) as s:
            w0 = s.t_start + a.warmup
            t_kill, t_restart = w0 + ph, w0 + 2 * ph
            for rec in s:
                now = time.time()
                if not killed and now >= t_kill:
                    server.kill()
                    t_kill, killed = time.time(), True
                    statuses.append((t_kill, "server killed"))
                if killed and not restarted and now >= t_restart:
                    server.start()
                    t_restart, restarted = time.time(), True
                    statuses.append((t_restart, "server restarted"))
                if isinstance(rec, Result) and rec.score is not None:
                    times[rec.camera].append(rec.receive_time)
                elif isinstance(rec, Status) and rec.camera == "cam00":
                    statuses.append((rec.time, rec.status))
    finally:
        server.kill()

    def rate(ts: list[float], t0: float, t1: float) -> float:
        return sum(t0 <= t < t1 for t in ts) / (t1 - t0)

    others = [c for c in times if c != "cam00"]
    before = {c: rate(times[c], w0, t_kill) for c in others}
    during = {c: rate(times[c], t_kill + 1.0, t_restart) for c in others}   # the first second: the error's path
    change = {c: during[c] / before[c] - 1.0 for c in others if before[c] > 0}
    back = [t for t in times["cam00"] if t > t_restart]
    return {
        "kill_phase_s": ph, "cam00_rate_before": round(rate(times["cam00"], w0, t_kill), 3),
        "cam00_frames_during_outage": sum(t_kill + 1.0 <= t < t_restart for t in times["cam00"]),
        "others_rate_before_mean": round(float(np.mean(list(before.values()))), 3),
        "others_rate_during_mean": round(float(np.mean(list(during.values()))), 3),
        "others_rate_change_max_abs": round(max(abs(v) for v in change.values()), 4) if change else None,
        "others_rate_change_mean": round(float(np.mean(list(change.values()))), 4) if change else None,
        "cam00_back_after_restart_s": round(back[0] - t_restart, 3) if back else None,
        "cam00_rate_after_restart": round(rate(times["cam00"], back[0], w0 + 3 * ph), 3) if back else 0.0,
        "cam00_statuses": [(round(t - w0, 3), st) for t, st in statuses],
    }


# ------------------------------------------------------------------------------------------------ stages
def stage_timings(clip: Path, scorer: Any, batches: list[int], repeat: int = 30) -> dict[str, Any]:
    """Isolated, single-threaded costs per frame: PyAV decode to RGB, cv2 read, resizes, Scorer.score."""
    import av
    import cv2

    from lfdn_edge.stream.pipeline import FrameScorer

    out: dict[str, Any] = {}
    with av.open(str(clip)) as c:
        it = c.decode(video=0)
        imgs = []
        t = time.perf_counter()
        for _ in range(repeat * 2):
            imgs.append(next(it).to_ndarray(format="rgb24"))
        out["pyav_decode_rgb_ms"] = round(1e3 * (time.perf_counter() - t) / len(imgs), 2)
    cap = cv2.VideoCapture(str(clip))
    t = time.perf_counter()
    for _ in range(repeat * 2):
        cap.read()
    out["cv2_read_ms"] = round(1e3 * (time.perf_counter() - t) / (repeat * 2), 2)
    cap.release()
    fs = FrameScorer(scorer, 1)
    w, h = fs.size
    t = time.perf_counter()
    for i in range(repeat):
        fs.resize(imgs[i])
    out["pil_resize_ms"] = round(1e3 * (time.perf_counter() - t) / repeat, 3)
    t = time.perf_counter()
    for i in range(repeat):
        cv2.resize(imgs[i], (w, h), interpolation=cv2.INTER_LINEAR)
    out["cv2_resize_ms"] = round(1e3 * (time.perf_counter() - t) / repeat, 3)
    score = {}
    for b in batches:
        x = [imgs[i % len(imgs)] for i in range(b)]
        fs(x)
        reps = max(3, repeat // max(1, b // 4))
        t = time.perf_counter()
        for _ in range(reps):
            fs(x)
        dt = (time.perf_counter() - t) / reps
        score[str(b)] = {"ms_per_call": round(1e3 * dt, 2), "ms_per_frame": round(1e3 * dt / b, 3)}
    out["frame_scorer_by_batch"] = score
    return out


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=ROOT / "runs/demo/ckpt.pt",
                   help="checkpoint whose onnx image engine is built and used (default: the Quick start's)")
    p.add_argument("--engine", type=Path, default=None,
                   help="engine (or checkpoint) to score with instead of building one from --ckpt")
    p.add_argument("--cameras", default="1,8,16,32", help="comma-separated camera counts N (default: 1,8,16,32)")
    p.add_argument("--variants", default="stream,loop,loop-every",
                   help="comma-separated: stream, loop (skips to each camera's newest frame), loop-every (reads "
                        "every frame in turn, as the issue words the plain loop) (default: all three)")
    p.add_argument("--fps", type=float, default=15.0, help="camera frame rate (default: 15)")
    p.add_argument("--size", default="640x480", help="camera frame size WxH (default: 640x480)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per run (default: 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds excluded at the start (default: 3)")
    p.add_argument("--grace", type=float, default=1.5,
                   help="seconds run after the window so that its last frames can finish (default: 1.5)")
    p.add_argument("--clips", type=int, default=4, help="distinct H.264 clips, cameras share them (default: 4)")
    p.add_argument("--asap-cameras", type=int, default=8,
                   help="also run the plain loop unpaced (as fast as it reads) with this many cameras, the issue's "
                        "reference point; 0: skip (default: 8)")
    p.add_argument("--max-wait", type=float, default=0.02, help="the stream's batcher max_wait (default: 0.02)")
    p.add_argument("--threads", type=int, default=None,
                   help="Scorer threads (onnxruntime / native; default: the backend's default)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/lfdn-stream-bench"), help="where the clips go")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON file (default: benchmarks/results/stream-bench-<date>.json)")
    p.add_argument("--no-stages", action="store_true", help="skip the isolated per-stage timings")
    p.add_argument("--resize-in", choices=("reader", "scorer"), default="scorer",
                   help="where the stream resizes frames for the engine: the reader threads (default, as "
                        "lfdn_edge.stream does) or the scoring thread (as before 2026-12-06)")
    p.add_argument("--kill-one", type=int, default=0, metavar="N",
                   help="also run N cameras with cam00 from a real RTSP server (tests/rtsp_server.py, Debian's "
                        "gst-rtsp-server), killed and restarted mid-run (default: 0 = not run)")
    p.add_argument("--kill-phase", type=float, default=8.0,
                   help="seconds before the kill, of the outage, and after the restart (default: 8)")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    a = parse_args(argv)
    from lfdn_edge.runtime.scorer import Scorer
    from lfdn_edge.stream.uri import parse_size

    size = parse_size(a.size)
    ns = [int(x) for x in a.cameras.split(",") if x.strip()]
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    for v in variants:
        if v not in ("stream", "loop", "loop-every"):
            raise SystemExit(f"unknown variant {v!r}: stream, loop or loop-every")
    engine = ensure_engine(a.ckpt, a.engine)
    scorer = Scorer(str(engine)) if a.threads is None else Scorer(str(engine), threads=a.threads)
    seconds = a.warmup + max(a.duration, 3 * a.kill_phase if a.kill_one else 0.0) + a.grace + 2.0
    frames = int(math.ceil(seconds * a.fps))
    t = time.time()
    clips = write_clips(a.workdir, max(1, min(a.clips, max(ns))), seconds, a.fps, size)
    calib = calibrate_threshold(a.workdir, scorer, a.fps, size)
    a.threshold_on = calib["on"]
    print(f"clips: {len(clips)} x {frames} frames ({time.time() - t:.1f} s); alert threshold {a.threshold_on:.4f}",
          file=sys.stderr, flush=True)
    date = datetime.date.today().isoformat()
    res: dict[str, Any] = {
        "benchmark": "stream-bench", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"cpu_model": cpu_model(), "cores": os.cpu_count(), "loadavg_start": list(os.getloadavg()),
                    "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"cameras": ns, "variants": variants, "fps": a.fps, "size": list(size), "duration_s": a.duration,
                     "warmup_s": a.warmup, "grace_s": a.grace, "clips": len(clips), "clip_frames": frames,
                     "max_wait_s": a.max_wait, "threads": a.threads, "torch_threads": 1, "resize_in": a.resize_in,
                     "engine": str(engine), "engine_kind": repr(scorer), "ckpt": str(a.ckpt),
                     "segments_per_clip": [clip_segments(i, frames, a.fps) for i in range(len(clips))],
                     "alert_threshold": calib},
        "results": [],
    }
    try:
        import av
        import cv2
        import onnxruntime
        import torch
        res["machine"]["versions"] = {"av": av.__version__, "cv2": cv2.__version__, "torch": torch.__version__,
                                      "onnxruntime": onnxruntime.__version__}
    except ImportError:
        pass
    if not a.no_stages:
        res["stages"] = stage_timings(clips[0], scorer, sorted({1, *[n for n in ns if n > 1]}))
        print("stages:", json.dumps(res["stages"]), file=sys.stderr, flush=True)
    for n in ns:
        for v in variants:
            if v == "stream":
                r = run_stream(clips, n, scorer, a, frames)
            else:
                r = run_loop(clips, n, scorer, a, frames, every=v == "loop-every")
            r = {"cameras": n, "variant": v, **r}
            res["results"].append(r)
            print(json.dumps({k: r.get(k) for k in ("cameras", "variant", "scored_fps", "dropped",
                                                    "fairness_max_over_min", "latency_s", "cpu", "events")}),
                  file=sys.stderr, flush=True)
    if a.kill_one > 0:
        r = {"cameras": a.kill_one, "variant": "stream-kill-one", **run_kill_one(clips, a.kill_one, scorer, a)}
        res["results"].append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
    if a.asap_cameras > 0:
        r = {"cameras": a.asap_cameras, "variant": "loop-asap",
             **run_loop(clips, a.asap_cameras, scorer, a, frames, paced=False)}
        res["results"].append(r)
        print(json.dumps({k: r[k] for k in ("cameras", "variant", "scored_fps", "cpu")}), file=sys.stderr, flush=True)
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    out = a.out or ROOT / "benchmarks" / "results" / f"stream-bench-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return res


if __name__ == "__main__":
    threading.current_thread().name = "stream-bench"
    main()
