"""Live cameras: sources -> readers -> a deadline batcher -> the Scorer -> health, alerts -> records.

    import lfdn_edge.stream as ls
    with ls.open(["rtsp://cam1/stream", "test://pattern?anomaly=30-45"], scorer="runs/demo/ckpt.pt") as s:
        for rec in s:                      # Result, Event, Status, and one Summary at the end
            print(ls.to_dict(rec))

docs/STREAMS.md describes sources (lfdn_edge.stream.uri), scheduling (reader, pipeline), health, alerts, the
JSON lines records (sinks: output, mqtt), and the HTTP preview page and Prometheus metrics (web, metrics; ``open(..., http=...)``).
"""

from __future__ import annotations

from typing import Any, Iterable

from .alerts import AlertConfig, Event
from .clips import ClipConfig
from .config import CameraConfig, load_config
from .health import HealthConfig
from .mqtt import MqttSink
from .output import JsonLinesSink
from .pipeline import Stream
from .probe import probe
from .reader import Backoff
from .records import SCHEMA, Clip, Result, Status, Summary, to_dict
from .uri import SourceSpec, parse_uri, redact

__all__ = ["open", "Stream", "probe", "parse_uri", "redact", "SourceSpec", "CameraConfig", "load_config",
           "AlertConfig", "HealthConfig", "Backoff", "JsonLinesSink", "MqttSink", "Result", "Event", "Status",
           "Summary", "Clip", "ClipConfig", "to_dict", "SCHEMA"]


def open(sources: Iterable[Any], scorer: Any, **kwargs: Any) -> Stream:   # noqa: A001 (the API's name)
    """A Stream over ``sources`` (URIs, webcam indices, SourceSpec, CameraConfig or camera dicts) scored by
    ``scorer`` (a Scorer, or an engine / checkpoint path). Use it as a context manager and iterate it; keyword
    arguments: fps, alerts (AlertConfig), health (HealthConfig), max_wait, duration, read_timeout, backoff,
    retries, seed, torch_threads, scorer_backoff (see Stream), clips (a ClipConfig, or a directory: event clips, stream copy of
    the source's packets; lfdn_edge.stream.clips), sinks (JsonLinesSink, MqttSink, ...: every record is written to
    each as it is yielded; the caller closes them), and http: ``"HOST:PORT"`` (or (host, port); port 0 = any
    free one) to serve the preview page, /metrics (Prometheus) and /api/state while the stream runs
    (lfdn_edge.stream.web; ``stream.http.url`` is the address)."""
    return Stream(sources, scorer, **kwargs)
