"""The stream: readers (one thread per camera) -> a deadline batcher -> one Scorer call per batch -> health,
alerts -> records. The batcher and the scoring run in the thread that iterates the stream.

At each tick the batcher waits for a first frame, then at most ``max_wait`` seconds for the other running
cameras (never longer: a stalled camera does not hold the others back), takes at most one frame per camera,
and scores the healthy ones with one ``Scorer.score`` call per chunk of the engine's maximum batch. Engines that
include the backbone get the frames resized to their frame size; the others get features computed by the
engine's backbone (lfdn_edge.features) first.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import replace
from typing import Any, Iterable, Iterator, Optional, Union

import numpy as np

from .alerts import AlertConfig, AlertTracker
from .config import camera
from .frames import Frame
from .health import OK, STALLED, HealthConfig, HealthMonitor
from .reader import Backoff, Reader
from .records import Result, Status, Summary
from .scorer_guard import ScorerGuard
from .uri import source_names

JOIN_TIMEOUT_S = 5.0
log = logging.getLogger("lfdn_edge.stream")


class FrameScorer:
    """Frames (any size, uint8 RGB) -> scores with a Scorer: resized for a backbone engine, or through the
    engine's backbone in PyTorch for a features engine; chunks of at most the engine's max batch.

    ``torch_threads``: PyTorch's intra-op thread count while scoring (the backbone of a features engine, and a
    checkpoint's PyTorch graph), set while a batch is scored and restored after the call (default 1). PyTorch's
    setting is process-wide (checked with the OpenMP backend): other threads that run PyTorch during a call get
    it too. A
    frame or two at a small input size gains nothing from more threads, and an OpenMP team that shares the
    cores with the reader threads or another process waits at every layer for a descheduled thread: on 2 busy
    cores, 1 frame of Lite0 at 64 px took 170-290 ms with 2 threads and 6-7 ms with 1 (docs/STREAMS.md).
    None leaves torch's setting as it is."""

    def __init__(self, scorer: Any, torch_threads: Optional[int] = 1):
        if torch_threads is not None and int(torch_threads) < 1:
            raise ValueError(f"torch_threads must be >= 1 or None, got {torch_threads}")
        self.scorer = scorer
        self.max_batch = int(scorer.batch_range[1])
        self.torch_threads = None if torch_threads is None else int(torch_threads)
        self.calls = 0
        self._extractor: Any = None
        if scorer.includes_backbone:
            self.size = (int(scorer.input_shape[2]), int(scorer.input_shape[1]))   # (W, H)
        else:
            from ..features import FeatureConfig, MultiLayerFeatures

            self._extractor = MultiLayerFeatures(FeatureConfig(**scorer.header["feature"])).eval()
            s = int(self._extractor.config.input_size)
            self.size = (s, s)

    def resize(self, img: np.ndarray) -> np.ndarray:
        """The frame at the scorer's input size (PIL bilinear, antialiased; as is when it has that size)."""
        w, h = self.size
        if img.shape[1] == w and img.shape[0] == h:
            return img
        from PIL import Image

        return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        prev = torch.get_num_threads()
        if self.torch_threads is not None and self.torch_threads != prev:
            torch.set_num_threads(self.torch_threads)
        try:
            out = []
            for s in range(0, len(images), self.max_batch):
                x = np.stack([self.resize(i) for i in images[s:s + self.max_batch]])
                if self._extractor is not None:
                    with torch.inference_mode():
                        x = self._extractor(torch.from_numpy(x)).numpy()
                out.append(np.asarray(self.scorer.score(x), dtype=np.float64))
                self.calls += 1
            return np.concatenate(out) if out else np.zeros(0)
        finally:
            if torch.get_num_threads() != prev:
                torch.set_num_threads(prev)


def make_scorer(scorer: Any, **kwargs: Any) -> Any:
    """A Scorer, or a Scorer made from an engine / checkpoint path."""
    if hasattr(scorer, "score") and hasattr(scorer, "batch_range"):
        return scorer
    from ..runtime.scorer import Scorer

    return Scorer(scorer, **kwargs)


class Stream:
    """Context-managed: ``with Stream(...) as s: for record in s: ...`` (lfdn_edge.stream.open).

    ``sinks``: objects with ``write(record)`` (JsonLinesSink, MqttSink): every record is written to each, in
    order, as it is yielded (the caller opens and closes them). ``prepare_in_readers``: every frame is resized
    for the scorer in its reader's thread (beside the scoring: PIL releases the GIL) instead of in the scoring
    thread (default) for the frames taken; it scored 22 % more frames at 16 cameras and 41 % fewer at 32 in
    tools/stream_bench.py (docs/STREAMS.md, Benchmark): use it when the cameras seldom drop frames.

    ``scorer_backoff``: the delays between tries of a scorer that raised ConnectionError (a Triton server that
    went away): the cameras keep running, their frames get results without a score meanwhile, and statuses
    ``scorer_unavailable`` / ``scorer_back`` mark the outage (lfdn_edge.stream.scorer_guard)."""

    def __init__(self, sources: Iterable[Union[str, int, Any]], scorer: Any, *, fps: Optional[float] = None,
                 alerts: Optional[AlertConfig] = None, health: HealthConfig = HealthConfig(),
                 max_wait: float = 0.02, duration: Optional[float] = None, read_timeout: float = 5.0,
                 backoff: Backoff = Backoff(), retries: Optional[int] = None, seed: Optional[int] = 0,
                 torch_threads: Optional[int] = 1, http: Optional[Union[str, int, tuple]] = None,
                 clips: Optional[Any] = None, sinks: Iterable[Any] = (), prepare_in_readers: bool = False,
                 scorer_backoff: Backoff = Backoff()):
        self.sinks = list(sinks)
        for sink in self.sinks:
            if not callable(getattr(sink, "write", None)):
                raise TypeError(f"sinks: {sink!r} has no write(record) method")
        defaults: dict[str, Any] = {} if fps is None else {"fps": fps}
        cams = [camera(s, defaults) for s in sources]
        if not cams:
            raise ValueError("no sources: give at least one URI")
        specs = source_names([c.spec for c in cams])
        cams = [replace(c, spec=s, alerts=c.alerts if alerts is None else _merge(c.alerts, alerts))
                for s, c in zip(specs, cams)]
        for c in cams:   # fail now, in the caller's thread, when a decoder is not installed
            _check_decoder(c.spec)
        self.scorer = make_scorer(scorer)
        self.frame_scorer = FrameScorer(self.scorer, torch_threads)
        self.cameras = {c.spec.name: c for c in cams}
        self.alerts = {n: AlertTracker(n, c.alerts.resolved(self.scorer.threshold)) for n, c in self.cameras.items()}
        self.health_config = health
        self.health = {n: HealthMonitor(health) for n in self.cameras}
        self.max_wait = max_wait
        self.duration = duration
        self.cond = threading.Condition()
        self.status_queue: queue.Queue = queue.Queue()   # status records, and clip records (any thread)
        self.clip_writer: Optional[Any] = None
        self.clips: dict[str, Any] = {}
        if clips is not None:   # event clips (lfdn_edge.stream.clips): a packet ring per camera, one writer thread
            from .clips import ClipConfig, ClipWriter
            from .decode import decoder_name

            self.clip_writer = ClipWriter(clips if isinstance(clips, ClipConfig) else ClipConfig(str(clips)),
                                          self.status_queue.put)
            for n, c in self.cameras.items():
                if c.clips:
                    dec = decoder_name(c.spec)
                    note = "" if dec == "pyav" else \
                        f"no clips: the {dec} decoder gives decoded frames, not the encoded packets"
                    if note:
                        log.warning("%s: %s", n, note)
                    self.clips[n] = self.clip_writer.camera(n, c.clip_pre, c.clip_post, note)
        self.readers = {n: Reader(c.spec, self.cond, self._on_status, read_timeout, backoff, retries,
                                  None if seed is None else seed + i, clips=self.clips.get(n),
                                  prepare=self.frame_scorer.resize if prepare_in_readers else None)
                        for i, (n, c) in enumerate(self.cameras.items())}
        self.counts = {n: {"frames": 0, "scored": 0, "unscored": 0, "ood": 0, "events": 0, "health": {}}
                       for n in self.cameras}
        self.scorer_guard = ScorerGuard(list(self.cameras), scorer_backoff, seed)
        self._last_frame = {n: 0.0 for n in self.cameras}
        self._stalled = {n: False for n in self.cameras}
        self._rr = 0
        self.monitor: Optional[Any] = None
        self.http: Optional[Any] = None
        if http is not None:   # the preview page and /metrics (lfdn_edge.stream.web), served while the stream runs
            from .metrics import StreamMonitor
            from .web import PreviewServer

            self.monitor = StreamMonitor(
                {n: (r.spec.display, self.alerts[n].c.on) for n, r in self.readers.items()},
                lambda: {n: r.stats for n, r in self.readers.items()})
            self.http = PreviewServer(http, self.monitor)
        self._started = False
        self._closed = False
        self.t_start = 0.0

    # ----------------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> Stream:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        if self._started:
            return
        if self.http is not None:
            self.http.start()   # binds now: a port in use fails here, before any reader starts
        self._started = True
        self.t_start = time.time()
        if self.clip_writer is not None:
            self.clip_writer.start()
        for n in self._last_frame:
            self._last_frame[n] = time.monotonic()
        for r in self.readers.values():
            r.start()

    def close(self) -> None:
        """Stop every reader and wait for its thread (bounded); then the HTTP server (the port freed)."""
        if self._closed:
            return
        self._closed = True
        self._stop_readers()
        if self.clip_writer is not None:
            self.clip_writer.close()
        if self.http is not None:
            self.http.close()

    def _stop_readers(self) -> None:
        for r in self.readers.values():
            r.stop()
        for r in self.readers.values():
            if r.thread.ident is not None:   # started (start() fails before the readers when the port is taken)
                r.join(JOIN_TIMEOUT_S)

    def _on_status(self, cam: str, status: str, detail: str) -> None:
        self.status_queue.put(Status(cam, status, time.time(), detail))

    # ----------------------------------------------------------------------------------------- batching
    def _collect(self, timeout: float) -> list[Frame]:
        """Frames ready now (at most one per camera): wait up to ``timeout`` for a first one, then up to
        max_wait for the other running cameras."""
        names = list(self.readers)
        with self.cond:
            deadline = time.monotonic() + timeout
            while not any(r.buffer.ready() for r in self.readers.values()):
                if all(r.done.is_set() for r in self.readers.values()):
                    return []
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self.cond.wait(left)
            deadline = time.monotonic() + self.max_wait
            while True:
                waiting = [r for r in self.readers.values()
                           if not r.buffer.ready() and not r.done.is_set() and not self._stalled[r.camera]]
                left = deadline - time.monotonic()
                if not waiting or left <= 0:
                    break
                self.cond.wait(left)
            k = self._rr % len(names)
            self._rr += 1
            frames = []
            for n in names[k:] + names[:k]:   # round robin: which camera comes first changes every tick
                f = self.readers[n].buffer.take()
                if f is not None:
                    frames.append(f)
            return frames

    def _stall_checks(self) -> list[Status]:
        out = []
        now = time.monotonic()
        for n, r in self.readers.items():
            if r.done.is_set() or self._stalled[n]:
                continue
            if now - self._last_frame[n] > self.health_config.stall_s:
                self._stalled[n] = True
                out.append(Status(n, STALLED, time.time(), f"no frame for {self.health_config.stall_s:g} s"))
        return out

    def _drain_status(self) -> list[Status]:
        out = []
        while True:
            try:
                out.append(self.status_queue.get_nowait())
            except queue.Empty:
                return out

    # ----------------------------------------------------------------------------------------- scoring
    def _process(self, frames: list[Frame]) -> list[Any]:
        out: list[Any] = []
        now = time.monotonic()
        healthy, states = [], []
        for f in frames:
            self._last_frame[f.camera] = now
            if self._stalled[f.camera]:
                self._stalled[f.camera] = False
                out.append(Status(f.camera, "recovered", time.time(), "frames again"))
            h = self.health[f.camera].check(f.image)
            states.append(h)
            if self.monitor is not None:
                self.monitor.frame(f.camera, f.index, f.image)
            c = self.counts[f.camera]
            c["frames"] += 1
            c["health"][h] = c["health"].get(h, 0) + 1
            if h == OK:
                healthy.append(f)
        scores = self._score(healthy, out) if healthy else np.zeros(0)
        t_done = time.time()
        by_id = {} if scores is None else {id(f): float(s) for f, s in zip(healthy, scores)}
        for f, h in zip(frames, states):
            tracker = self.alerts[f.camera]
            s = by_id.get(id(f))
            on = tracker.c.on
            ref = f.capture_time if f.capture_time <= f.receive_time else f.receive_time
            st = self.readers[f.camera].stats
            r = Result(f.camera, f.index, f.capture_time, f.capture_clock, f.receive_time, t_done, t_done - ref, h, s,
                       on, None if s is None else bool(s > on), st.dropped["late"] + st.dropped["fps"], f.pts)
            out.append(r)
            if s is None and h == OK:
                self.counts[f.camera]["unscored"] += 1   # healthy, but the scorer was unavailable
            if s is not None:
                c = self.counts[f.camera]
                c["scored"] += 1
                c["ood"] += int(bool(r.is_ood))
                evs = tracker.update(f.capture_time, f.index, s)
                clips = self.clips.get(f.camera)
                if clips is not None:
                    for e in evs:
                        clips.event(e)
                    if tracker.active is not None:
                        clips.progress(tracker.active.id, f.capture_time)
                c["events"] += sum(e.kind == "start" for e in evs)
                out.extend(evs)
        return out

    def _score(self, frames: list[Frame], out: list[Any]) -> Optional[np.ndarray]:
        """Scores of the healthy frames, or None while the scorer is unavailable (ConnectionError: its status
        records go to ``out``; the next try waits for the guard's backoff)."""
        guard = self.scorer_guard
        if not guard.ready():
            return None
        try:
            scores = self.frame_scorer([f.image if f.model_input is None else f.model_input for f in frames])
        except ConnectionError as exc:
            out.extend(guard.failed(exc))
            return None
        out.extend(guard.succeeded())
        return scores

    # ----------------------------------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[Any]:
        """The records; the readers are stopped before the last status, event-end and summary records, the HTTP
        server (when there is one) once the summary has been taken (or the iteration is abandoned)."""
        self.start()
        records = self._records()
        try:
            for rec in records:
                yield self._seen(rec)
        finally:
            records.close()
            self.close()

    def _seen(self, record: Any) -> Any:
        if self.monitor is not None:
            self.monitor.observe(record)
        for sink in self.sinks:
            sink.write(record)
        return record

    def _records(self) -> Iterator[Any]:
        t_end = None if self.duration is None else time.monotonic() + self.duration
        try:
            while True:
                yield from self._drain_status()
                if t_end is not None and time.monotonic() >= t_end:
                    break
                timeout = 0.1 if t_end is None else max(0.0, min(0.1, t_end - time.monotonic()))
                frames = self._collect(timeout)
                if frames:
                    yield from self._process(frames)
                yield from self._stall_checks()
                if not frames and all(r.done.is_set() for r in self.readers.values()) and \
                        not any(r.buffer.ready() for r in self.readers.values()):
                    break
        finally:
            self._stop_readers()
        yield from self._drain_status()
        for n, t in self.alerts.items():
            evs = t.close()
            if n in self.clips:
                for e in evs:
                    self.clips[n].event(e)
            yield from evs
        if self.clip_writer is not None:   # the last clips, with the packets they have (the readers are stopped)
            self.clip_writer.close()
            yield from self._drain_status()
        yield self.summary()

    def summary(self) -> Summary:
        cams = {}
        for n, r in self.readers.items():
            c = self.counts[n]
            cams[n] = {"uri": r.spec.display, "state": r.state, "frames": c["frames"], "scored": c["scored"],
                       "unscored": c["unscored"], "ood": c["ood"], "events": c["events"], "health": dict(c["health"]),
                       "dropped": dict(r.stats.dropped), "reconnects": r.stats.reconnects,
                       "last_error": r.stats.last_error or None}
            if n in self.clips:
                cams[n]["clips"] = self.clips[n].summary()
        return Summary(cams, time.time() - self.t_start if self.t_start else 0.0)


def _merge(cam: AlertConfig, over: AlertConfig) -> AlertConfig:
    """A camera's own settings win over the stream-wide ones where it has them (on/off)."""
    return AlertConfig(cam.on if cam.on is not None else over.on, cam.off if cam.off is not None else over.off,
                       over.hold, over.cooldown, over.min_frames)


def _check_decoder(spec: Any) -> None:
    from .decode import decoder_name, import_av

    name = decoder_name(spec)
    if name == "pyav":
        import_av()
    elif name == "gstreamer":
        from .gst import import_gst

        import_gst()
