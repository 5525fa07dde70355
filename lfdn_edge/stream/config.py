"""Per-camera settings, and the --config file that lists many cameras.

The file is YAML (``.yaml`` / ``.yml``; needs PyYAML, which comes with the [stream] extra) or JSON (``.json``,
no extra needed), with the same structure:

    engine: runs/demo/ckpt.pt          # optional; the command line's --engine wins
    mqtt: mqtt://user:pw@broker:1883/site1   # optional, one URL or a list; the command line's --mqtt wins
    defaults: {fps: 15, hold: 1.0, cooldown: 5}
    cameras:
      - uri: rtsp://user:pw@10.0.0.5/stream1?transport=udp
        name: door
        threshold: -0.55               # alert on-threshold (default: the engine's calibrated one)
        off_threshold: -0.6            # hysteresis: the event ends below this
      - uri: test://pattern?anomaly=30-45
        name: demo

Camera keys: uri (required), name, fps, live, threshold, off_threshold, hold, cooldown, min_frames; with event
clips on (--clips DIR): clips (false: none for this camera), clip_pre, clip_post (seconds; default the stream's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

from .alerts import AlertConfig
from .synthetic import SyntheticConfig
from .uri import SourceSpec, parse_fps, parse_uri

CAMERA_KEYS = ("uri", "name", "fps", "live", "threshold", "off_threshold", "hold", "cooldown", "min_frames", "clips",
               "clip_pre", "clip_post")
FILE_KEYS = ("engine", "defaults", "cameras", "mqtt")


@dataclass(frozen=True)
class CameraConfig:
    spec: SourceSpec
    alerts: AlertConfig = field(default_factory=AlertConfig)
    clips: bool = True                  # event clips for this camera when the stream writes clips
    clip_pre: Optional[float] = None    # seconds before / after an event (None: the stream's ClipConfig)
    clip_post: Optional[float] = None


def camera(source: Union[str, int, SourceSpec, CameraConfig, dict], defaults: Optional[dict] = None) -> CameraConfig:
    """A CameraConfig from a URI, a SourceSpec, a CameraConfig or a dict of CAMERA_KEYS (defaults under it)."""
    if isinstance(source, CameraConfig):
        return source
    if not isinstance(source, dict):
        source = {"uri": source}
    d = {**(defaults or {}), **source}
    unknown = sorted(set(d) - set(CAMERA_KEYS))
    if unknown:
        raise ValueError(f"camera settings: unknown key(s) {unknown}; known: {', '.join(CAMERA_KEYS)}")
    if "uri" not in d:
        raise ValueError("camera settings: every camera needs a uri")
    spec = parse_uri(d["uri"])
    if spec.kind == "test":   # a bad test:// option fails here, before any thread starts
        SyntheticConfig.from_spec(spec)
    if "name" in d:
        spec = replace(spec, name=str(d["name"]))
    if d.get("fps") is not None and spec.fps is None:   # the URI's own ?fps= wins over a default
        spec = replace(spec, fps=parse_fps(d["fps"]))
    if "live" in d:
        spec = replace(spec, live=bool(d["live"]))

    def num(key: str) -> Optional[float]:
        v = d.get(key)
        if v is None:
            return None
        try:
            return float(v)
        except (TypeError, ValueError):
            raise ValueError(f"camera {spec.display}: {key}={v!r} is not a number") from None

    base = AlertConfig()
    hold, cooldown = num("hold"), num("cooldown")
    a = AlertConfig(on=num("threshold"), off=num("off_threshold"),
                    hold=base.hold if hold is None else hold, cooldown=base.cooldown if cooldown is None else cooldown,
                    min_frames=int(d["min_frames"]) if d.get("min_frames") is not None else base.min_frames)
    for key in ("clip_pre", "clip_post"):
        v = num(key)
        if v is not None and v < 0:
            raise ValueError(f"camera {spec.display}: {key} must be >= 0, got {v}")
    clips = d.get("clips", True)
    if not isinstance(clips, bool):
        raise ValueError(f"camera {spec.display}: clips={clips!r} is not true or false")
    return CameraConfig(spec, a, clips, num("clip_pre"), num("clip_post"))


def load_config(path: Union[str, Path]) -> dict[str, Any]:
    """The parsed file: {"engine": str or None, "cameras": [CameraConfig, ...], "mqtt": [broker URL, ...]}."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such config file: {p}")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError(f"{p}: reading YAML needs PyYAML: pip install 'lfdn-edge[stream]' (or pyyaml), or "
                              "write the same structure as JSON (.json)") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{p}: not valid YAML: {exc}") from None
    elif p.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not valid JSON: {exc}") from None
    else:
        raise ValueError(f"{p}: a camera config is .yaml, .yml or .json")
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected a mapping with 'cameras' (and optional 'engine', 'defaults')")
    unknown = sorted(set(doc) - set(FILE_KEYS))
    if unknown:
        raise ValueError(f"{p}: unknown key(s) {unknown}; known: {', '.join(FILE_KEYS)}")
    cams = doc.get("cameras") or []
    defaults = doc.get("defaults") or {}
    if not isinstance(cams, list) or not isinstance(defaults, dict):
        raise ValueError(f"{p}: 'cameras' must be a list and 'defaults' a mapping")
    try:
        cameras = [camera(c, defaults) for c in cams]
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None
    engine = doc.get("engine")
    if engine is not None:
        engine = str((p.parent / engine) if not Path(engine).is_absolute() else engine)
    mqtt = doc.get("mqtt") or []
    mqtt = [mqtt] if isinstance(mqtt, str) else mqtt
    if not isinstance(mqtt, list) or not all(isinstance(u, str) for u in mqtt):
        raise ValueError(f"{p}: 'mqtt' must be a broker URL or a list of them")
    return {"engine": engine, "cameras": cameras, "mqtt": mqtt}
