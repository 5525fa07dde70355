"""Score live cameras, streams, video files and test:// sources with an engine; write JSON lines.

Every frame gives a result record (score, health, capture/receive times, latency), alerts give event records
(start, update, end with the peak score), camera faults status records, and the end a summary
(docs/STREAMS.md). Sources: a webcam index, v4l2:///dev/videoN, rtsp://..., http(s)://... MJPEG, file:// or a
path (videos, image sequences), csi://N, gst://<pipeline>, test://pattern?...

Examples:
    lfdn-edge stream "test://pattern?anomaly=30-45&frames=150" --engine runs/demo/ckpt.pt
    lfdn-edge stream rtsp://user:pw@10.0.0.5/s1 cam2.mp4 --engine cam.native.fp32.engine --fps 5 --out r.jsonl
    lfdn-edge stream --config cameras.yaml --engine cam.onnx.fp32.engine --duration 60 --events-only
    lfdn-edge stream rtsp://10.0.0.5/s1 --engine cam.native.fp32.engine --http 0.0.0.0:8080 --out r.jsonl
    lfdn-edge stream rtsp://10.0.0.5/s1 --engine cam.native.fp32.engine --mqtt mqtt://user:pw@broker:1883/site1
    lfdn-edge stream rtsp://10.0.0.5/s1 --triton http://gpu-box:8000        (scored by a running lfdn-edge serve)
    lfdn-edge stream rtsp://10.0.0.5/s1 --engine cam.native.fp32.engine --clips clips/ --clip-pre 5 --clip-post 5

With --http the same server gives the preview page (/), Prometheus metrics (/metrics), /api/state,
/snapshot/CAMERA.jpg and /stream/CAMERA.mjpg; it stops with the stream.

With --mqtt the same records also go to an MQTT broker (paho-mqtt, the [stream] extra): PREFIX/CAMERA/result
(QoS 0), PREFIX/CAMERA/event (QoS 1), PREFIX/CAMERA/status and PREFIX/summary (QoS 1, retained), and the
availability PREFIX/status: "online" (retained) at connect, "offline" at exit or, as the last will, when the
process dies (lfdn_edge.stream.mqtt). A broker that is down never stops the scoring: messages are dropped
(counted) beyond a bounded queue and the client reconnects.

With --triton (instead of --engine) the frames are decoded here and scored by a running `lfdn-edge serve` (or a
Triton with an export-triton model): a model that takes `images` gets the frames resized to its size; one that
takes `features` needs --engine too (the engine or checkpoint it was built from), whose backbone computes the
features here. The alert threshold defaults to the server's (lfdn_edge.runtime.triton_client).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Optional

from .common import add_common_options, check_output_path, parser, run_cli


def build_parser(prog: str = "lfdn-edge stream"):
    p = parser(prog, __doc__)
    p.add_argument("sources", nargs="*", help="source URIs (see above); more in --config")
    p.add_argument("--engine", default=None,
                   help="engine file (lfdn-edge build) or checkpoint (lfdn-edge train); or `engine:` in --config")
    p.add_argument("--triton", default=None, metavar="URL",
                   help="score on a running Triton server instead (lfdn-edge serve): http://HOST:8000 or "
                        "grpc://HOST:8001; with a features model, --engine names the local backbone's engine")
    p.add_argument("--triton-model", default="lfdn_edge", metavar="NAME",
                   help="the model's name on the Triton server (default: %(default)s)")
    p.add_argument("--config", default=None, help="cameras file (.yaml, .yml or .json; docs/STREAMS.md)")
    p.add_argument("--out", default="-", help="JSON lines output file, appended to (default: stdout)")
    p.add_argument("--mqtt", action="append", default=None, metavar="URL",
                   help="also publish the records to an MQTT broker: mqtt://[user:pw@]host[:1883]/PREFIX, or "
                        "mqtts:// (TLS); options ?client_id=&keepalive=&queue=&qos=&result_qos=&ca= (see above); "
                        "repeat for several brokers; or `mqtt:` in --config")
    p.add_argument("--events-only", action="store_true", help="write event, status and summary records only")
    p.add_argument("--fps", type=float, default=None, help="target fps of every camera without its own")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: at the end "
                   "of the sources; live sources never end)")
    p.add_argument("--threshold", type=float, default=None,
                   help="alert on-threshold (default: the engine's calibrated threshold)")
    p.add_argument("--off-threshold", type=float, default=None, help="alert off-threshold (default: = on)")
    p.add_argument("--hold", type=float, default=1.0,
                   help="seconds at or below the off-threshold before an event ends (default: %(default)s)")
    p.add_argument("--cooldown", type=float, default=0.0,
                   help="seconds after an event during which no new one starts (default: %(default)s)")
    p.add_argument("--min-frames", type=int, default=1,
                   help="scores above the on-threshold in a row to start an event (default: %(default)s)")
    p.add_argument("--max-wait", type=float, default=0.02,
                   help="seconds the batcher waits for the other cameras after a first frame (default: %(default)s)")
    p.add_argument("--read-timeout", type=float, default=5.0,
                   help="seconds without a frame before a source is reconnected (default: %(default)s)")
    p.add_argument("--backend", default="auto", help="runtime backend (default: the one the engine needs)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the backend's default)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the native / onnxruntime backend")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="PyTorch threads while a batch is scored (a features engine's backbone, a checkpoint; the setting "
                        "is process-wide, restored after each call); "
                        "more rarely helps a few small frames and is much slower on busy cores (default: %(default)s)")
    p.add_argument("--http", default=None, metavar="HOST:PORT",
                   help="serve a preview page (frames, score plots, events) at /, Prometheus metrics at /metrics, "
                        "JSON at /api/state and MJPEG at /stream/CAMERA.mjpg while the stream runs (e.g. "
                        "127.0.0.1:8080; 0.0.0.0:8080 for other machines; port 0 picks a free one)")
    p.add_argument("--clips", default=None, metavar="DIR",
                   help="write a clip of each event into DIR: the source's own packets (no re-encoding; PyAV sources "
                        "only) from the keyframe at or before --clip-pre seconds before the start to --clip-post "
                        "seconds after the end; MP4 (H.264, H.265, AV1, MPEG-4, MJPEG) or Matroska; a `clip` record "
                        "says when each is written")
    p.add_argument("--clip-pre", type=float, default=3.0, help="seconds of clip before an event (default: %(default)s)")
    p.add_argument("--clip-post", type=float, default=3.0, help="seconds of clip after an event (default: %(default)s)")
    p.add_argument("--clip-max", type=float, default=60.0, help="longest clip in seconds (default: %(default)s)")
    add_common_options(p, cache=False)
    return p


def main(argv=None, prog: str = "lfdn-edge stream") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from ..runtime.scorer import Scorer
        from ..stream import AlertConfig, JsonLinesSink, MqttSink, load_config
        from ..stream.config import camera
        from ..stream.mqtt import parse_mqtt_url

        check_output_path(None if args.out == "-" else args.out, "--out")
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        cfg = load_config(args.config) if args.config else {"engine": None, "cameras": [], "mqtt": []}
        engine = args.engine or cfg["engine"]
        if engine is None and args.triton is None:
            raise ValueError("no engine: pass --engine ENGINE (or `engine:` in --config), or --triton URL")
        defaults = {} if args.fps is None else {"fps": args.fps}
        cams = [camera(s, defaults) for s in args.sources] + cfg["cameras"]
        if not cams:
            raise ValueError("no sources: give source URIs or --config")
        mqtt_urls = args.mqtt or cfg["mqtt"]   # the command line's --mqtt wins over the file's
        for u in mqtt_urls:
            parse_mqtt_url(u)   # a malformed URL fails before the engine loads
        stack = contextlib.ExitStack()
        if args.triton is not None:
            from ..runtime.triton_client import TritonScorer

            scorer = stack.enter_context(TritonScorer(args.triton, args.triton_model, feature_source=engine))
        else:
            scorer = Scorer(engine, args.backend, args.device, threads=args.threads)
        alerts = AlertConfig(args.threshold, args.off_threshold, args.hold, args.cooldown, args.min_frames)
        types = {"event", "status", "summary", "clip"} if args.events_only else None
        clips = None
        if args.clips:
            from ..stream.clips import ClipConfig

            clips = ClipConfig(args.clips, args.clip_pre, args.clip_post, args.clip_max)
        with stack:
            mqtt = [stack.enter_context(MqttSink(u, types=types)) for u in mqtt_urls]   # connecting meanwhile
            sinks = [stack.enter_context(JsonLinesSink(args.out, types=types)), *mqtt]
            summary = _run(args, cams, scorer, alerts, sinks, clips)
            for m in mqtt:
                m.close()   # flushed (bounded by its flush timeout) before the counts are printed
        if not args.quiet:
            for m in mqtt:
                print(m.summary(), file=sys.stderr)
            for name, c in (summary or {}).get("cameras", {}).items():
                cl = c.get("clips")
                cl = "" if cl is None else f", clips {cl['written']}" + (f" ({cl['note']})" if cl["note"] else "")
                print(f"{name}: {c['frames']} frames, {c['scored']} scored, {c['events']} events, "
                      f"dropped {sum(c['dropped'].values())}, health {c['health']}, {c['state']}{cl}", file=sys.stderr)
        return 0

    return run_cli(args, body)


def _run(args, cams, scorer, alerts, sinks, clips=None) -> Optional[dict]:
    """The stream's records into every sink; the summary record's dict (None when interrupted before it)."""
    from ..stream import to_dict
    from ..stream.pipeline import Stream

    summary = None
    with Stream(cams, scorer, fps=args.fps, alerts=alerts, max_wait=args.max_wait, duration=args.duration,
                read_timeout=args.read_timeout, torch_threads=args.torch_threads, http=args.http,
                clips=clips) as stream:
        if stream.http is not None:
            print(f"preview: {stream.http.url}  metrics: {stream.http.url}metrics", file=sys.stderr, flush=True)
        try:
            for rec in stream:
                for sink in sinks:
                    sink.write(rec)
                if rec.type == "summary":
                    summary = to_dict(rec)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
    return summary


if __name__ == "__main__":
    sys.exit(main())
