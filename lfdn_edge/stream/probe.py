"""What a source is: its kind, the decoder that would open it, codec, size and fps (lfdn-edge probe)."""

from __future__ import annotations

import threading
import time
from typing import Any

from .decode import decoder_name
from .uri import parse_uri


def probe(uri: Any, read_timeout: float = 5.0, decode_one: bool = True) -> dict[str, Any]:
    """Open the source, read its stream information (and one frame with ``decode_one``), close it."""
    from .reader import open_source

    spec = parse_uri(uri)
    info: dict[str, Any] = {"uri": spec.display, "kind": spec.kind, "live": spec.live,
                            "decoder": decoder_name(spec)}
    if spec.kind in ("csi", "gst") or info["decoder"] == "gstreamer":
        from .gst import pipeline_for

        info["pipeline"] = pipeline_for(spec)   # credentials are redacted when printed (see cli/probe.py)
    stop = threading.Event()
    src = open_source(spec, 0, time.time(), read_timeout, stop)
    src.open()
    try:
        info.update(src.describe())
        if decode_one:
            t = time.monotonic()
            raw = src.read()
            info["first_frame"] = None if raw is None else {
                "shape": None if raw.image is None else list(raw.image.shape), "pts": raw.pts,
                "decoded_in_s": round(time.monotonic() - t, 4), "error": raw.error or None}
    finally:
        stop.set()
        src.close()
    return info
